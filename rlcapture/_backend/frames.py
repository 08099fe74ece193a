"""What a frame must look like, checked where it is produced.

Producers check each frame before it enters a ring, so a bad render fails in
the process that made it, with the env named, and nothing reaches the encoder
that it cannot write.
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
    frames gain a channel axis.

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
        raise FrameError(
            f"{where}: frames must be uint8, got {frame.dtype}; convert with "
            "np.clip(frame * 255, 0, 255).astype(np.uint8) for [0, 1] floats"
        )
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
