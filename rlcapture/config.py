"""One frozen, validated description of a recording: :class:`RecordConfig`.

Every option a recording takes is declared once here, with its default and its
check, and read where it is used: the CLI builds a config from its arguments,
:class:`~rlcapture.Recorder`, :class:`~rlcapture.CaptureVectorEnv` and
:func:`~rlcapture.make_vec` take one (or keywords that they merge into one),
and the producers' part (:class:`TransportConfig`) travels to them inside the
recorder's :class:`~rlcapture._backend.channel.Endpoint`. Adding an option is
one field and one check in its group, plus the code that uses it.

The options come in groups that read as they are used::

    RecordConfig(
        video=VideoConfig(fps, codec, crf, preset, pix_fmt, gop),
        images=ImagesConfig(videos, frames, keyframes),
        transport=TransportConfig(drop, slots, timeout),
        keep, keep_seed, encoders, mosaic, name_prefix,
        loggers, upload_attempts, upload_timeout,
    )

but a config is usually built from flat keywords, the same names the fronts
take (``RecordConfig(codec="libx265", drop=True)``); :meth:`RecordConfig.replace`
changes some and validates again. An unknown keyword is a
:class:`~rlcapture.ConfigError` naming the valid ones.

This module sits under the engine: the channel imports it, and it imports
nothing of rlcapture but the errors and the keep-rule grammar (a leaf module).
Which codecs exist is FFmpeg's to say; its binding is asked when a
:class:`VideoConfig` is checked.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ._backend.keep import KeepRule, parse_keep
from ._backend.uploads import DEFAULT_ATTEMPTS, DEFAULT_UPLOAD_TIMEOUT, parse_trackers
from .errors import ConfigError

__all__ = [
    "RecordConfig",
    "VideoConfig",
    "ImagesConfig",
    "TransportConfig",
    "DEFAULT_SLOTS",
    "DEFAULT_TIMEOUT",
    "MAX_ENCODERS",
    "MAX_MOSAIC_TILES",
    "build_config",
    "keyword_names",
    "unknown_option",
]

#: Frames each producer's ring holds by default.
DEFAULT_SLOTS = 8
#: Seconds any side waits for another before calling it stuck.
DEFAULT_TIMEOUT = 60.0
#: The most encoder processes one recorder starts.
MAX_ENCODERS = 64
#: The most env tiles of the overview video.
MAX_MOSAIC_TILES = 1024
# A prefix becomes part of file names that people paste into shells and
# scripts: letters, digits (any script) and . _ - + = @ , only. This refuses
# '/', '\\', NUL, control characters, spaces, quotes and ; | & $ ` * ? < > ( ).
_PREFIX_OK = re.compile(r"[\w.+=@,-]*")


def _is_int(value: Any) -> bool:
    """An integer, and not a bool (``True`` as a frame count is a mistake, not 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _set(obj: Any, name: str, value: Any) -> None:
    """Store a normalized value on a frozen dataclass during its own validation."""
    object.__setattr__(obj, name, value)


# -- the groups ---------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class VideoConfig:
    """How each episode's video is encoded.

    Attributes:
        fps: Frame rate of every video; None takes each env's ``render_fps``
            (else 30).
        codec: FFmpeg encoder (default H.264, which plays everywhere).
        crf: Quality for codecs that take a constant rate factor (lower is better).
        preset: Speed preset of x264-family codecs.
        pix_fmt: Pixel format of the videos.
        gop: Frames between keyframes, and so between fragments that survive a
            crash; None means about a second.
    """

    fps: float | None = None
    codec: str = "libx264"
    crf: int = 23
    preset: str = "ultrafast"
    pix_fmt: str = "yuv420p"
    gop: int | None = None

    def __post_init__(self) -> None:
        fps = self.fps
        if fps is not None and not (
            isinstance(fps, (int, float))
            and not isinstance(fps, bool)
            and 0 < fps <= 1000
            and math.isfinite(fps)
        ):
            raise ConfigError(f"fps must be a number in (0, 1000], got {fps!r}")
        if not (_is_int(self.crf) and 0 <= self.crf <= 63):
            raise ConfigError(f"crf must be an integer from 0 to 63, got {self.crf!r}")
        if self.gop is not None and not (_is_int(self.gop) and self.gop >= 1):
            raise ConfigError(f"gop must be a positive integer, got {self.gop!r}")
        if not isinstance(self.preset, str):
            raise ConfigError(
                f"preset must be a string (an x264 speed preset), got {self.preset!r}"
            )
        from ._backend.video import check_codec  # FFmpeg says which encoders exist

        try:
            check_codec(self.codec, self.pix_fmt)
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True, kw_only=True)
class ImagesConfig:
    """Which files each recorded episode writes besides the manifest line.

    Attributes:
        videos: Write a video per episode; False writes only the images asked
            for by ``frames``/``keyframes`` (and the manifest).
        frames: Also save every ``frames``-th step of each episode as a PNG in
            ``out/frames/env<E>-episode<K>/<step>.png`` (1: every frame).
        keyframes: Save the first and last frame of each episode as PNG next
            to its video; an int ``k`` adds every ``k``-th step.
    """

    videos: bool = True
    frames: int | None = None
    keyframes: bool | int = False

    def __post_init__(self) -> None:
        if not isinstance(self.videos, bool):
            raise ConfigError(f"videos must be True or False, got {self.videos!r}")
        frames = self.frames
        if frames is not None and not (_is_int(frames) and frames >= 1):
            raise ConfigError(f"frames must be a positive integer (1: every frame), got {frames!r}")
        keyframes = self.keyframes
        if not isinstance(keyframes, bool) and not (_is_int(keyframes) and keyframes >= 1):
            raise ConfigError(
                "keyframes must be True (first and last frame) or a positive step interval, "
                f"got {keyframes!r}"
            )
        if not self.videos and frames is None and keyframes is False:
            raise ConfigError(
                "videos=False leaves nothing to write: ask for frames=K (PNG sequence) "
                "or keyframes=True, or keep videos"
            )

    @property
    def keyframe_every(self) -> int | None:
        """Steps between keyframes besides the first and last (None: only those)."""
        return None if isinstance(self.keyframes, bool) else self.keyframes


@dataclass(frozen=True, kw_only=True)
class TransportConfig:
    """How producers hand frames to the encoder; rides in the recorder's endpoint.

    Attributes:
        drop: Producers drop frames instead of waiting when their ring is full
            (never blocks the env; each drop is counted in the manifest).
        slots: Frames each producer's ring holds.
        timeout: Seconds any side waits for another before calling it stuck.
    """

    drop: bool = False
    slots: int = DEFAULT_SLOTS
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not isinstance(self.drop, bool):
            raise ConfigError(f"drop must be True or False, got {self.drop!r}")
        if not (_is_int(self.slots) and 1 <= self.slots <= 4096):
            raise ConfigError(f"slots must be an integer from 1 to 4096, got {self.slots!r}")
        timeout = self.timeout
        if not (
            isinstance(timeout, (int, float))
            and not isinstance(timeout, bool)
            and timeout > 0
            and math.isfinite(timeout)
        ):
            raise ConfigError(f"timeout must be positive, got {timeout!r}")
        _set(self, "timeout", float(timeout))


# -- the whole --------------------------------------------------------------------------
_GROUPS: dict[str, type] = {
    "video": VideoConfig,
    "images": ImagesConfig,
    "transport": TransportConfig,
}
#: A flat option's group: "codec" -> "video", "drop" -> "transport", ...
_GROUP_OF: dict[str, str] = {f.name: g for g, cls in _GROUPS.items() for f in fields(cls)}


def _mosaic_error(value: Any) -> ConfigError:
    return ConfigError(
        f"mosaic must be the number of env tiles, from 1 to {MAX_MOSAIC_TILES}, got {value!r} "
        "(CaptureVectorEnv takes mosaic=True for all its envs)"
    )


@dataclass(frozen=True, init=False)
class RecordConfig:
    """Everything a recording does besides where it goes; frozen, validated, picklable.

    Build it from flat keywords (``RecordConfig(codec="libx265", drop=True)``,
    or :meth:`from_options`) or from groups (``RecordConfig(video=VideoConfig(...))``;
    flat keywords given too apply over the group). Each option is checked when
    the config is made, so a bad one fails before any folder or process exists.

    Attributes:
        video: Encoding of the videos (:class:`VideoConfig`: ``fps``, ``codec``,
            ``crf``, ``preset``, ``pix_fmt``, ``gop``).
        images: Which files an episode writes (:class:`ImagesConfig`:
            ``videos``, ``frames``, ``keyframes``).
        transport: Producer to encoder (:class:`TransportConfig`: ``drop``,
            ``slots``, ``timeout``).
        keep: Which episodes keep their files once they end: "all" (default),
            "worst:K", "best:K", "failures" (terminated, not truncated),
            "failures:R" (return below R), "sample:K", "sample:P", combined
            with commas; stored as :class:`~rlcapture.KeepRule` objects.
            Discarded episodes' files are deleted when the decision is made;
            their manifest lines stay, with ``kept`` and ``why``.
        keep_seed: Seeds the random sample of ``keep="sample:..."``.
        encoders: Encoder processes, or "auto" (the default): a count from the
            usable cores and the number of envs (rule and figures in
            :mod:`rlcapture._backend.encoder_count`, applied by the
            :class:`~rlcapture.Recorder`; 1 with a mosaic or a ranked keep rule). With ``k > 1``, env ``i`` is encoded by
            encoder ``i % k``; all write to the same folder and manifest.
        mosaic: Also write ``out/mosaic.mp4``, one labelled tile per env for
            envs ``0 .. mosaic-1``; True (only where a vector env makes the
            recorder) means a tile for each of its envs.
        name_prefix: Put before every file name the run writes.
        loggers: Experiment trackers to report each episode to, as spec
            strings: ``"wandb[:PROJECT]"``, ``"tensorboard[:DIR]"``,
            ``"mlflow[:TRACKING_URI]"`` (:mod:`rlcapture.trackers`). Each
            finished episode's statistics and each kept video are sent by an
            uploader process, off the step path; what could not be sent is
            named in :attr:`Recorder.summary <rlcapture.Recorder.summary>` and
            in the manifest (``not_uploaded``).
        upload_attempts: Tries per upload before it is given up.
        upload_timeout: Seconds the end of the run waits for uploads still
            under way (then the rest is named as not sent).

    Raises:
        ConfigError: An option is unknown, out of range, or conflicts with another.
    """

    video: VideoConfig
    images: ImagesConfig
    transport: TransportConfig
    keep: tuple[KeepRule, ...] = (KeepRule("all"),)
    keep_seed: int = 0
    encoders: int | str = "auto"
    mosaic: int | bool | None = None
    name_prefix: str = ""
    loggers: tuple[str, ...] = ()
    upload_attempts: int = DEFAULT_ATTEMPTS
    upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT

    def __init__(self, **options: Any) -> None:
        names = self.option_names()
        unknown = [k for k in options if k not in names]
        if unknown:
            raise unknown_option(unknown, {"RecordConfig": names})
        changes: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
        for key, value in options.items():
            if key in _GROUP_OF:
                changes[_GROUP_OF[key]][key] = value
        for group, cls in _GROUPS.items():
            base = options.get(group)
            if base is None:
                base = cls(**changes[group])
            elif not isinstance(base, cls):
                raise ConfigError(f"{group} must be a {cls.__name__}, got {type(base).__name__}")
            elif changes[group]:
                base = replace(base, **changes[group])
            _set(self, group, base)
        for f in fields(self):
            if f.name not in _GROUPS:
                _set(self, f.name, options.get(f.name, f.default))
        self.__post_init__()

    def single_encoder(self) -> bool:
        """Whether an output needs every env's frames in one encoder (mosaic, ranked keep)."""
        ranked = any(r.kind in ("worst", "best") or r.count for r in self.keep)
        return self.mosaic is not None or ranked

    def __post_init__(self) -> None:
        try:
            _set(self, "keep", parse_keep(self.keep))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not _is_int(self.keep_seed):
            raise ConfigError(f"keep_seed must be an integer, got {self.keep_seed!r}")
        if self.encoders != "auto" and not (
            _is_int(self.encoders) and 1 <= self.encoders <= MAX_ENCODERS
        ):
            raise ConfigError(
                f"encoders must be 'auto' or an integer from 1 to {MAX_ENCODERS} (encoder "
                f"processes; env i is encoded by encoder i % encoders), got {self.encoders!r}"
            )
        mosaic = self.mosaic
        if mosaic is False:
            _set(self, "mosaic", None)
        elif (
            mosaic is not None
            and mosaic is not True
            and not (_is_int(mosaic) and 1 <= mosaic <= MAX_MOSAIC_TILES)
        ):
            raise _mosaic_error(mosaic)
        several = self.encoders != "auto" and self.encoders > 1
        if several and self.mosaic is not None:
            raise ConfigError(
                "mosaic needs every env's frames in one encoder; use encoders=1 with mosaic"
            )
        ranked = [r.label() for r in self.keep if r.kind in ("worst", "best") or r.count]
        if several and ranked:
            raise ConfigError(
                f"keep rule {ranked[0]!r} ranks episodes across the run, but each of the "
                f"{self.encoders} encoders would rank only its own; use encoders=1 with it "
                "(failures and sample:P work with several encoders)"
            )
        prefix = self.name_prefix
        if not isinstance(prefix, str) or ".." in prefix or not _PREFIX_OK.fullmatch(prefix):
            raise ConfigError(
                f"name prefix {prefix!r} must be a plain file-name part: letters, digits and "
                "'. _ - + = @ ,' only (no '/', '\\', '..', NUL, spaces or shell characters)"
            )
        if len(prefix) > 100:
            raise ConfigError("name prefix must be at most 100 characters")
        try:
            _set(self, "loggers", parse_trackers(self.loggers))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not (_is_int(self.upload_attempts) and 1 <= self.upload_attempts <= 100):
            raise ConfigError(
                f"upload_attempts must be an integer from 1 to 100, got {self.upload_attempts!r}"
            )
        timeout = self.upload_timeout
        if not (
            isinstance(timeout, (int, float))
            and not isinstance(timeout, bool)
            and 0 < timeout <= 86400
            and math.isfinite(timeout)
        ):
            raise ConfigError(f"upload_timeout must be seconds in (0, 86400], got {timeout!r}")
        _set(self, "upload_timeout", float(timeout))

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Every keyword a config takes: the flat options and the group names, sorted."""
        return tuple(sorted({f.name for f in fields(cls)} | set(_GROUP_OF)))

    @classmethod
    def from_options(cls, **options: Any) -> RecordConfig:
        """A config from flat keywords (the names :class:`~rlcapture.Recorder` takes)."""
        return cls(**options)

    def replace(self, **changes: Any) -> RecordConfig:
        """A copy with ``changes`` (flat options or whole groups), validated again."""
        if not changes:
            return self
        current: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        return RecordConfig(**{**current, **changes})

    def mosaic_tiles(self) -> int | None:
        """The number of mosaic tiles (None: no mosaic).

        Raises:
            ConfigError: ``mosaic`` is True, which only a vector env can turn
                into a number (its envs).
        """
        if self.mosaic is True:
            raise _mosaic_error(True)
        return self.mosaic


# -- helpers for the fronts ---------------------------------------------------------------
def keyword_names(func: Callable[..., Any]) -> tuple[str, ...]:
    """The names ``func`` takes by keyword (for an error that lists them)."""
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind in kinds and p.name != "self"
    )


def unknown_option(names: Iterable[str], valid: Mapping[str, Iterable[str]]) -> ConfigError:
    """The error for keywords nobody takes: names them, a near miss, and the valid ones.

    Args:
        names: The unknown keywords.
        valid: Who takes what, e.g. ``{"CaptureVectorEnv": (...), "RecordConfig": (...)}``.
    """
    names = list(names)
    everything = sorted({n for group in valid.values() for n in group})
    near = difflib.get_close_matches(names[0], everything, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    what = (
        f"unknown option {names[0]!r}"
        if len(names) == 1
        else ("unknown options " + ", ".join(repr(n) for n in names))
    )
    if len(valid) == 1:
        listing = ", ".join(everything)
    else:
        listing = "; ".join(f"{', '.join(sorted(group))} ({who})" for who, group in valid.items())
    return ConfigError(f"{what}{hint}; valid options: {listing}")


def build_config(
    config: RecordConfig | None,
    options: Mapping[str, Any],
    *,
    front: str = "",
    front_options: Iterable[str] = (),
) -> RecordConfig:
    """``config`` (the defaults if None) with keyword ``options`` over it.

    Args:
        config: A config given by the caller, or None.
        options: Keywords a front did not take itself; each must be a
            :class:`RecordConfig` option.
        front: The front's name, for the error ("CaptureVectorEnv").
        front_options: The keywords the front takes itself, listed in the
            error next to the config's.

    Raises:
        ConfigError: ``config`` is not a RecordConfig, an option is unknown
            (the error lists the front's options and the config's), or a value
            is invalid.
    """
    if config is not None and not isinstance(config, RecordConfig):
        raise ConfigError(f"config must be a RecordConfig, got {type(config).__name__}")
    names = RecordConfig.option_names()
    unknown = [k for k in options if k not in names]
    if unknown:
        valid = (
            {front: tuple(front_options), "RecordConfig": names}
            if front
            else {"RecordConfig": names}
        )
        raise unknown_option(unknown, valid)
    if config is None:
        return RecordConfig(**options)
    return config.replace(**options)
