"""What ``rlcapture record``'s arguments mean: its seeds, the env's keywords, the config.

An argument named like a :class:`~rlcapture.RecordConfig` option is that option
(:func:`record_config`), so a new recording option needs only its flag in
:mod:`.record`; :func:`evaluation_options` is the one mapping of the arguments
onto :func:`rlcapture.evaluate`, used here and on Ray alike.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ..config import RecordConfig
from ..errors import ConfigError

__all__ = [
    "SeedCount",
    "default_out",
    "evaluation_options",
    "parse_env_kwargs",
    "parse_seeds",
    "record_config",
]


class SeedCount(list):  # type: ignore[type-arg]
    """``--seeds N`` (a count): seeds 0..N-1, which ``record`` spaces K apart."""


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: "0,1,2" (a list; "5," is the one seed 5) or "3" (a count: 0, 1, 2).

    A count comes back as a :class:`SeedCount`: a run with ``--seed S`` takes
    seeds S..S+K-1, so ``record`` spreads counted runs K apart to keep their
    episodes apart.
    """
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            count = int(text)
            if not 1 <= count <= 10_000:
                raise argparse.ArgumentTypeError(f"--seeds count must be from 1 to 10000, got {text}")
            seeds = SeedCount(range(count))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds must be a count (3) or a list (0,1,2), got {text!r}"
        ) from None
    if not seeds or any(not 0 <= s < 2**63 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds must hold seeds from 0 to 2**63-1, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds repeats a seed: {text!r}")
    return seeds


def default_out(env_id: str) -> str:
    """``runs/ENV_ID``, the id made a safe folder name."""
    return str(Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id).strip("._") or "env")


def record_config(args: argparse.Namespace, **overrides: Any) -> RecordConfig:
    """The :class:`RecordConfig` that ``rlcapture record``'s arguments ask for.

    An argument whose destination is named like a config option (``--codec``,
    ``--drop``, ``--keep``, ...) is that option, so a new option needs only
    its flag; the few named otherwise are mapped below. Arguments left
    unset (None) keep the config's defaults; ``overrides`` win over all.
    ``--mosaic`` stays True (a tile per env), which the vector env resolves.
    """
    options = {
        name: getattr(args, name)
        for name in RecordConfig.option_names()
        if getattr(args, name, None) is not None
    }
    options["videos"] = not getattr(args, "no_video", False)
    options.update(overrides)
    return RecordConfig.from_options(**options)


def parse_env_kwargs(text: str | None) -> dict[str, Any]:
    """``--env-kwargs``: a JSON object of the env's keyword arguments (None: none)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--env-kwargs must be a JSON object such as '{{\"continuous\": true}}': {exc} in {text!r}"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"--env-kwargs must be a JSON object ({{...}}), got {text!r}")
    return value


def evaluation_options(args: argparse.Namespace, out: Path, seed: int, schedule: Any) -> dict[str, Any]:
    """What ``rlcapture record``'s arguments ask of an evaluation, local or on Ray (one mapping)."""
    return {
        "seeds": range(seed, seed + args.episodes),
        "num_envs": args.num_envs,
        "out": out,
        "config": record_config(args, keep_seed=seed),
        "env_kwargs": parse_env_kwargs(getattr(args, "env_kwargs", None)),
        "imports": getattr(args, "imports", None) or (),
        "max_episode_steps": args.max_episode_steps,
        "deterministic": not args.stochastic,
        "overwrite": args.overwrite,
        "record": schedule,
        "envs_per_worker": args.envs_per_worker,
        "step_timeout": args.step_timeout,
        "on_error": args.on_error,
    }
