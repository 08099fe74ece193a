"""Which recorded episodes to keep, decided once each episode has ended.

Frames stream to the encoder as usual; when an episode ends, its return and
how it ended decide whether its files stay. A rule that ranks episodes (the
worst or best ``k`` by return, a random sample of ``k``) holds at most ``k`` of
them at a time: an episode that enters the ranking pushes one out, and that
one's files are deleted then. Disk use is bounded by the rules, never by the
length of the run.

An episode that did not finish (its env failed, its producer died, the run
stopped mid-episode) has no return to judge, so it is always kept: rlcapture
never deletes what it cannot judge.

Spec strings (``--keep``), combined with commas, an episode kept if any rule
keeps it: ``all``, ``worst:K``, ``best:K``, ``failures`` (terminated rather
than truncated), ``failures:R`` (return below ``R``), ``sample:K`` (a uniform
sample of ``K`` episodes), ``sample:P`` with ``0 < P < 1`` (each episode kept
with probability ``P``).

Random samples draw one number per episode from a hash of (seed, env,
episode), not from a generator consumed in the order episodes end: envs end
their episodes in an order that changes from run to run, and the same seed
must keep the same episodes. ``sample:K`` keeps the K episodes with the
smallest numbers, which is a uniform sample without replacement.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from dataclasses import dataclass
from typing import Any

from .episode import FINISHED, EndReason

__all__ = ["KeepRule", "KeepPolicy", "Decision", "parse_keep", "FINISHED"]

Key = tuple[int, int]  # (env, episode)


@dataclass(frozen=True)
class KeepRule:
    """One rule of a keep policy; see the module's docstring for the kinds."""

    kind: str  # "all", "worst", "best", "failures", "sample"
    count: int = 0  # worst/best/sample:K
    threshold: float | None = None  # failures:R
    probability: float | None = None  # sample:P

    def label(self) -> str:
        if self.kind in ("worst", "best"):
            return f"{self.kind} {self.count} by return"
        if self.kind == "failures":
            return "failure" if self.threshold is None else f"return below {self.threshold:g}"
        if self.kind == "sample":
            if self.probability is not None:
                return f"random sample (p={self.probability:g})"
            return f"random sample of {self.count}"
        return "all"


def _bad(spec: str, why: str) -> ValueError:
    return ValueError(
        f"keep rule {spec!r}: {why}; write all, worst:K, best:K, failures, failures:R, "
        "sample:K or sample:P (0<P<1), combined with commas (e.g. worst:3,best:3)"
    )


def parse_keep(spec: str | KeepRule | list[KeepRule] | tuple[KeepRule, ...]) -> tuple[KeepRule, ...]:
    """Parse ``--keep`` text (or pass rules through).

    Raises:
        ValueError: The text is not a keep spec; the message lists what is.
    """
    if isinstance(spec, KeepRule):
        return (spec,)
    if isinstance(spec, (list, tuple)):
        if not spec or not all(isinstance(r, KeepRule) for r in spec):
            raise _bad(str(spec), "expected KeepRule objects")
        return tuple(spec)
    if not isinstance(spec, str):
        raise _bad(repr(spec), "expected a string")
    rules: list[KeepRule] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        kind, sep, arg = part.partition(":")
        kind = kind.lower()
        if kind == "all" and not sep:
            rules.append(KeepRule("all"))
        elif kind in ("worst", "best"):
            try:
                count = int(arg)
            except ValueError:
                raise _bad(part, f"{kind} needs a whole number of episodes") from None
            if count < 1:
                raise _bad(part, f"{kind} needs at least 1 episode")
            rules.append(KeepRule(kind, count=count))
        elif kind == "failures":
            if not sep:
                rules.append(KeepRule("failures"))
                continue
            try:
                threshold = float(arg)
            except ValueError:
                raise _bad(part, "failures:R needs a number R") from None
            if not math.isfinite(threshold):
                raise _bad(part, "the threshold must be finite")
            rules.append(KeepRule("failures", threshold=threshold))
        elif kind == "sample":
            try:
                value = float(arg)
            except ValueError:
                raise _bad(part, "sample needs a count K or a probability P") from None
            if 0 < value < 1:
                rules.append(KeepRule("sample", probability=value))
            elif value >= 1 and value == int(value):
                rules.append(KeepRule("sample", count=int(value)))
            else:
                raise _bad(part, "sample needs a whole count >= 1 or a probability 0 < P < 1")
        else:
            raise _bad(part, "unknown rule")
    if not rules:
        raise _bad(spec, "no rule given")
    if any(r.kind == "all" for r in rules):
        return (KeepRule("all"),)
    return tuple(rules)


@dataclass
class Decision:
    """What to do once an episode has ended.

    Attributes:
        kept: Whether the episode's files stay (for now: a ranked rule may
            push it out later, reported then in ``evicted``).
        why: The rules that keep it, or why it was not kept.
        evicted: Episodes kept earlier that no rule holds any more, with why.
    """

    kept: bool
    why: str
    evicted: list[tuple[Key, str]]


class KeepPolicy:
    """Applies keep rules to ended episodes, in the order they end.

    Args:
        rules: From :func:`parse_keep`.
        seed: Seeds the random sample, so the same run keeps the same episodes.
    """

    def __init__(self, rules: tuple[KeepRule, ...], seed: int = 0) -> None:
        self.rules = rules
        self.keeps_all = any(r.kind == "all" for r in rules)
        self.seed = seed
        self._order = 0  # episodes judged so far: breaks ties, earliest first
        # Per ranked rule, a heap of the episodes it holds. For "worst" the
        # heap's top is the best return held (the next to go): (-return, -order).
        self._heaps: list[list[tuple[float, int, Key]]] = [[] for _ in rules]
        self._holders: dict[Key, set[int]] = {}  # which ranked rules hold an episode

    def decide(self, key: Key, record: dict[str, Any]) -> Decision:
        """Judge the episode ``key`` whose manifest record is ``record``."""
        if self.keeps_all:
            return Decision(True, "all", [])
        end = record.get("end")
        ret = record.get("return")
        if end not in FINISHED or ret is None or not math.isfinite(float(ret)):
            return Decision(True, f"unfinished ({end}): kept, it cannot be judged", [])
        ret = float(ret)
        self._order += 1
        order = self._order
        reasons: list[str] = []
        evicted: list[tuple[Key, str]] = []
        for i, rule in enumerate(self.rules):
            if rule.kind == "failures":
                failed = end == EndReason.TERMINATED if rule.threshold is None else ret < rule.threshold
                if failed:
                    reasons.append(rule.label())
            elif rule.kind == "sample" and rule.probability is not None:
                if self._draw(key) < rule.probability:
                    reasons.append(rule.label())
            else:  # ranked: worst, best, sample:K
                out = self._rank(i, rule, key, ret, order)
                if out != key:
                    reasons.append(rule.label())
                if out is not None and out != key:
                    evicted.extend(self._release(i, out, rule))
        if len(reasons) > len(self._holders.get(key, ())):
            # An unranked rule keeps it for good: no ranking can push it out.
            self._holders.pop(key, None)
        if reasons:
            return Decision(True, ", ".join(reasons), evicted)
        return Decision(False, f"not kept by {self.describe()}", evicted)

    def _rank(self, i: int, rule: KeepRule, key: Key, ret: float, order: int) -> Key | None:
        """Offer ``key`` to ranked rule ``i``; returns the episode pushed out (maybe ``key``)."""
        heap = self._heaps[i]
        if rule.kind == "worst":  # keep lowest returns; top = highest held
            item = (-ret, -order, key)
        elif rule.kind == "best":  # keep highest returns; top = lowest held
            item = (ret, -order, key)
        else:  # sample of rule.count: keep the smallest draws; top = largest held
            item = (-self._draw(key), -order, key)
        self._holders.setdefault(key, set()).add(i)
        if len(heap) < rule.count:
            heapq.heappush(heap, item)
            return None
        out = heapq.heappushpop(heap, item)[2]
        if out == key:
            self._holders[key].discard(i)
            if not self._holders[key]:
                del self._holders[key]
            return key
        return out

    def _release(self, i: int, out: Key, rule: KeepRule) -> list[tuple[Key, str]]:
        holders = self._holders.get(out)
        if holders is None:
            return []
        holders.discard(i)
        if holders:
            return []  # another ranked rule still holds it
        del self._holders[out]
        return [(out, f"pushed out of the {rule.label()}")]

    def _draw(self, key: Key) -> float:
        """A number in [0, 1) fixed by (seed, env, episode): the same whatever the order."""
        digest = hashlib.blake2b(f"{self.seed}:{key[0]}:{key[1]}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2**64

    def held(self, key: Key) -> bool:
        """Whether a ranked rule still holds ``key`` (so a later episode may push it out)."""
        return key in self._holders

    def describe(self) -> str:
        return ", ".join(r.label() for r in self.rules)
