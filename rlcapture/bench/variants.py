"""The variants ``rlcapture bench`` runs side by side: names, labels, descriptions, choice.

A variant's name is its base (``none``, ``render``, ``all``, ``every:M``,
``gym-vec``, ``gym-worker``, ``sb3``), with ``/eK`` when its recorder is told
to run K encoder processes (``all/e2``); without it the recorder chooses
(``encoders="auto"``, the default). What each one runs is said in
:mod:`rlcapture.bench.command`'s docstring and done in :mod:`rlcapture.bench.trial`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError

__all__ = [
    "CORE",
    "EVERY_FRAME",
    "OPT_IN",
    "TILED",
    "VARIANTS",
    "select_variants",
    "unavailable",
    "variant_base",
    "variant_encoders",
    "variant_label",
    "variant_names",
    "variant_what",
]

#: name -> (short label for tables and the chart, what it is)
VARIANTS: dict[str, tuple[str, str]] = {
    "none": ("no recording", "CaptureVectorEnv(record='none'): steps only, never renders"),
    "render": (
        "render, no encode",
        "CaptureVectorEnv(record='none') over envs that render every reset and step and "
        "drop the frame (rendering inside step, on the critical path)",
    ),
    "all": ("rlcapture every frame", "CaptureVectorEnv(record='all')"),
    "every": ("rlcapture 1 ep in M", "CaptureVectorEnv(record='every:M'): episodes 0, M, 2M, ..."),
    "record": (
        "rlcapture record command",
        "the whole `rlcapture record ENV -n N -k K` command in a subprocess, start-up "
        "included (K episodes: about as many frames as the other runs step)",
    ),
    "gym-vec": (
        "gym vector RecordVideo",
        "gymnasium.wrappers.vector.RecordVideo(AsyncVectorEnv), every episode, N frames tiled",
    ),
    "gym-worker": (
        "gym RecordVideo/worker",
        "gymnasium.wrappers.RecordVideo inside each AsyncVectorEnv worker, every episode",
    ),
    "sb3": (
        "SB3 VecVideoRecorder",
        "stable_baselines3 VecVideoRecorder(SubprocVecEnv), one video of every step, tiled",
    ),
}
#: Variants that try to record every frame: their frames/s is compared with the ceiling.
EVERY_FRAME = ("all", "record", "gym-vec", "gym-worker", "sb3")
#: Variants whose video frame tiles the N envs' frames.
TILED = ("gym-vec", "sb3")
#: rlcapture's own variants: a failure of one of them stops the bench.
CORE = ("none", "render", "all", "every")


#: Variants run only when named in ``--variants``.
OPT_IN = ("record",)


def variant_names(every: int, opt_in: bool = False) -> list[str]:
    """The default variants' names (with ``opt_in``, every one), in order, ``every`` as ``every:M``."""
    return [
        f"every:{every}" if v == "every" else v
        for v in VARIANTS
        if opt_in or v not in OPT_IN
    ]


def _split_encoders(variant: str) -> tuple[str, int | str]:
    """``all/e2`` -> (``all``, 2); ``all`` -> (``all``, ``"auto"``): the default count."""
    name, sep, k = variant.partition("/e")
    return (name, int(k)) if sep else (variant, "auto")


def variant_encoders(variant: str) -> int | str:
    """The ``encoders`` the variant's recorder is given (``"auto"``: the default rule)."""
    return _split_encoders(variant)[1]


def _with_encoders(variant: str, k: int | str) -> str:
    return variant if k == "auto" else f"{variant}/e{k}"


def variant_base(variant: str) -> str:
    """``every:20/e2`` -> ``every``: the entry of :data:`VARIANTS` the variant is."""
    variant = _split_encoders(variant)[0]
    return "every" if variant.startswith("every:") else variant


def variant_what(variant: str) -> str:
    """What the variant runs, in a sentence (for the JSON results)."""
    variant, k = _split_encoders(variant)
    more = f", Recorder(encoders={k})" if k != "auto" else ""
    if variant.startswith("every:"):
        m = int(variant.split(":", 1)[1])
        return (
            f"CaptureVectorEnv(record='{variant}'){more}: episodes 0, {m}, {2 * m}, ... of each env"
        )
    what = VARIANTS[variant][1]
    return f"{what}{more}" if k != "auto" else what


def variant_label(variant: str) -> str:
    """A short name for the table and the chart."""
    variant, k = _split_encoders(variant)
    if variant.startswith("every:"):
        label = f"rlcapture 1 ep in {variant.split(':', 1)[1]}"
    else:
        label = VARIANTS[variant][0]
    return f"{label}, {k} enc" if k != "auto" else label


def select_variants(
    text: str | None, every: int, encoders: Sequence[int | str] = ("auto",)
) -> list[str]:
    """The variants to run: ``--variants`` (default all), each recording one once per K."""
    chosen = _chosen_variants(text, every)
    out = []
    for v in chosen:
        if variant_base(v) in ("all", "every"):
            out.extend(_with_encoders(v, k) for k in dict.fromkeys(encoders))
        else:
            out.append(v)
    return out


def _chosen_variants(text: str | None, every: int) -> list[str]:
    if not text:
        return variant_names(every)
    names = variant_names(every, opt_in=True)
    chosen = []
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        key = "every" if part.startswith("every") else part
        if key not in VARIANTS:
            raise ConfigError(f"unknown variant {part!r}: choose from {', '.join(VARIANTS)}")
        if part.startswith("every:"):
            raise ConfigError("write the variant as 'every' and set M with --every-episode")
        name = f"every:{every}" if key == "every" else key
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ConfigError("--variants names no variant")
    return [v for v in names if v in chosen]


def unavailable(variant: str) -> str | None:
    """Why ``variant`` cannot run here, or None."""
    base = variant_base(variant)
    if base in ("gym-vec", "gym-worker", "sb3"):
        try:
            import moviepy  # noqa: F401
        except ImportError:
            return "moviepy is not installed (pip install 'gymnasium[other]')"
    if base == "sb3":
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            return "stable-baselines3 is not installed"
        except Exception as exc:  # noqa: BLE001
            return f"stable-baselines3 does not import: {type(exc).__name__}: {exc}"
    return None
