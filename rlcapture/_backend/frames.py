"""What a frame must look like, checked where it is produced.

Producers check each frame before it enters a ring, so a bad render fails in
the process that made it, with the env named, and nothing reaches the encoder
that it cannot write.

Frames are uint8, as ``render()`` gives them almost everywhere; that path is
checked only for its shape and never copied. Float frames in [0, 1] (SB3's
test envs, some custom renderers; moviepy and imageio take them too) are
scaled to uint8 here, at the cost of one pass to find their range and one copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FrameError

__all__ = ["as_frame"]

_MAX_SIDE = 16384


def as_frame(frame: Any, where: str) -> np.ndarray:
    """Return ``frame`` as a uint8 array of shape (H, W, 3) or (H, W, 1).

    RGBA frames lose their alpha channel (a view, no copy) and 2-D grayscale
    frames gain a channel axis. Float frames in [0, 1] are scaled to uint8
    (rounded to the nearest level).

    Args:
        frame: What ``render()`` (or the caller) gave.
        where: Who made it, for the message ("env 3 episode 0 step 12").

    Raises:
        FrameError: For anything else, saying what to change.
    """
    if not isinstance(frame, np.ndarray):
        if frame is None:
            raise FrameError(
                f"{where}: render() returned None; make the env with "
                "render_mode='rgb_array'"
            )
        if isinstance(frame, (list, tuple)):
            raise FrameError(
                f"{where}: render() returned a {type(frame).__name__}, not one frame; "
                "use render_mode='rgb_array' (not 'rgb_array_list')"
            )
        try:
            frame = np.asarray(frame)  # JAX, torch (CPU) and array-likes
        except Exception as exc:
            raise FrameError(
                f"{where}: a frame must be a numpy array, got {type(frame).__name__}"
            ) from exc
    if frame.dtype != np.uint8:
        return as_frame(_from_float(frame, where), where)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise FrameError(
            f"{where}: frames must be (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) "
            f"grayscale, got shape {tuple(frame.shape)}"
        )
    h, w = frame.shape[0], frame.shape[1]
    if h < 1 or w < 1 or h > _MAX_SIDE or w > _MAX_SIDE:
        raise FrameError(
            f"{where}: frame size {w}x{h} is out of range (1 to {_MAX_SIDE} pixels a side)"
        )
    if frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return frame


def _from_float(frame: np.ndarray, where: str) -> np.ndarray:
    """A float frame in [0, 1] as uint8 (alpha dropped first); refused outside that range.

    Raises:
        FrameError: The frame is not float, or holds values outside [0, 1] (NaN included).
    """
    if frame.dtype.kind != "f":
        raise FrameError(
            f"{where}: frames must be uint8 (or float in [0, 1]), got {frame.dtype}; convert "
            "with frame.astype(np.uint8) if its values are 0-255"
        )
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    if frame.size:
        lo, hi = float(np.min(frame)), float(np.max(frame))
        if not (lo >= 0.0 and hi <= 1.0):  # also False for NaN
            found = "NaN" if np.isnan(lo) or np.isnan(hi) else f"[{lo:g}, {hi:g}]"
            raise FrameError(
                f"{where}: float frames must hold values in [0, 1], this one holds {found}; "
                "scale it to [0, 1], or give uint8 frames (0-255)"
            )
    return np.rint(frame * 255.0).astype(np.uint8)
