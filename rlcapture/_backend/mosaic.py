"""The tiled overview: one video of every env side by side, composed in the encoder.

A complement to the per-env videos, never instead of them. Each env has a tile
(env ``e`` in tile ``e``, row-major), headed by a label with its env and
episode index drawn once per episode with Pillow. A frame is shrunk into its
tile as it passes through the encoder, before its ring slot is freed; a
mosaic frame is emitted when a tile is about to be overwritten before the
last one was shown (with a synchronous vector env: one mosaic frame per
vector step). An env between recorded episodes keeps its last frame, dimmed.

Shrinking is a box average over ``f x f`` pixels (an integer factor chosen so
the canvas fits ``max_size``) by Pillow's ``Image.reduce``, in C: ~0.4 ms for
a 600x400 frame at ``f = 2``, against 1.8 ms for a numba loop and 14 ms for a
numpy reshape-and-sum (``benchmarks/bench_outputs.py``, RESULTS.md). The
workers never see any of this: their cost does not change.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .video import EpisodeVideo, VideoOptions

__all__ = ["Mosaic", "shrink", "layout"]

#: Height of the label strip above each tile, in pixels.
LABEL_HEIGHT = 14


def layout(tiles: int, height: int, width: int, max_size: tuple[int, int]) -> tuple[int, int, int]:
    """Columns, rows and shrink factor for ``tiles`` frames of ``height x width``.

    The factor is the smallest integer such that the canvas (labels included)
    fits in ``max_size`` (width, height), so a few envs keep full resolution
    and many envs share a 720p frame.
    """
    cols = math.ceil(math.sqrt(tiles))
    rows = math.ceil(tiles / cols)
    max_w, max_h = max_size
    f = 1
    while f < max(height, width) and (
        cols * (width // f) > max_w or rows * (height // f + LABEL_HEIGHT) > max_h
    ):
        f += 1
    return cols, rows, f


def shrink(src: np.ndarray, f: int, out: np.ndarray) -> None:
    """Box-average ``src`` (H, W, C) by ``f`` into ``out`` (H//f, W//f, 3).

    Edge pixels beyond a multiple of ``f`` are cut; grey is spread to RGB.
    Pillow's ``reduce`` does the averaging in C (rounded to nearest).
    """
    h, w = out.shape[:2]
    if f == 1:
        np.copyto(out, src[:h, :w])  # broadcasts one grey channel to three
        return
    plane = src[:, :, 0] if src.shape[2] == 1 else src
    small = Image.fromarray(plane).reduce(f, box=(0, 0, w * f, h * f))
    pixels = np.asarray(small)
    np.copyto(out, pixels[:, :, None] if pixels.ndim == 2 else pixels)


class Mosaic:
    """Composes frames of many envs into one video at ``path``.

    Args:
        path: The video to create (must not exist).
        tiles: Number of env tiles; envs ``0 .. tiles-1`` are shown.
        fps: Frames per second of the mosaic.
        options: Encoding options (those of the per-env videos).
        max_size: Largest canvas, (width, height).
    """

    def __init__(
        self,
        path: str,
        tiles: int,
        fps: float,
        options: VideoOptions,
        max_size: tuple[int, int] = (1280, 720),
    ) -> None:
        self.path = path
        self.tiles = tiles
        self.fps = fps
        self.options = options
        self.max_size = max_size
        self.frames = 0
        self.video: EpisodeVideo | None = None
        self.canvas: np.ndarray | None = None
        self.tile_h = self.tile_w = 0
        self.cols = 1
        self._fresh = np.zeros(tiles, bool)  # tiles changed since the last mosaic frame
        self._label: list[int | None] = [None] * tiles  # the episode each label shows
        self._font = ImageFont.load_default()

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self.video.size if self.video is not None else 0

    def _start(self, height: int, width: int) -> None:
        self.cols, rows, f = layout(self.tiles, height, width, self.max_size)
        self.tile_h, self.tile_w = height // f, width // f
        canvas_w = self.cols * self.tile_w
        canvas_h = rows * (self.tile_h + LABEL_HEIGHT)
        self.canvas = np.zeros((canvas_h, canvas_w, 3), np.uint8)
        self.video = EpisodeVideo(self.path, canvas_w, canvas_h, 3, self.fps, self.options)

    def _tile(self, env: int) -> tuple[np.ndarray, np.ndarray]:
        """The label strip and the picture area of ``env``'s tile."""
        assert self.canvas is not None
        row, col = divmod(env, self.cols)
        y = row * (self.tile_h + LABEL_HEIGHT)
        x = col * self.tile_w
        label = self.canvas[y : y + LABEL_HEIGHT, x : x + self.tile_w]
        picture = self.canvas[y + LABEL_HEIGHT : y + LABEL_HEIGHT + self.tile_h, x : x + self.tile_w]
        return label, picture

    def put(self, env: int, episode: int, pixels: np.ndarray) -> None:
        """Take a frame of ``env``'s ``episode`` into its tile (a copy, shrunk)."""
        if not 0 <= env < self.tiles:
            return
        if self.canvas is None:
            self._start(pixels.shape[0], pixels.shape[1])
        if self._fresh[env]:
            self._emit()
        label, picture = self._tile(env)
        if self._label[env] != episode:
            self._draw_label(label, f"env {env}  episode {episode}")
            self._label[env] = episode
        f = max(1, math.ceil(max(pixels.shape[0] / self.tile_h, pixels.shape[1] / self.tile_w)))
        h, w = min(self.tile_h, pixels.shape[0] // f), min(self.tile_w, pixels.shape[1] // f)
        if (h, w) != picture.shape[:2]:
            picture[:] = 0  # a frame smaller than the tile: the rest stays black
        shrink(pixels, f, picture[:h, :w])
        self._fresh[env] = True

    def end(self, env: int) -> None:
        """``env``'s episode ended: dim its tile until its next recorded frame."""
        if self.canvas is None or not 0 <= env < self.tiles:
            return
        if self._fresh[env]:
            self._emit()  # show its last frame undimmed first
        _, picture = self._tile(env)
        picture //= 2

    def _draw_label(self, strip: np.ndarray, text: str) -> None:
        image = Image.new("RGB", (strip.shape[1], strip.shape[0]), (32, 32, 32))
        ImageDraw.Draw(image).text((3, 1), text, fill=(255, 255, 255), font=self._font)
        strip[:] = np.asarray(image)

    def _emit(self) -> None:
        assert self.video is not None and self.canvas is not None
        self.video.write(self.canvas, self.frames, _nothing)
        self.frames += 1
        self._fresh[:] = False

    def close(self) -> None:
        """Show the last changes and finish the file."""
        if self.video is None:
            return
        try:
            if self._fresh.any():
                self._emit()
        finally:
            self.video.close()


def _nothing() -> None:
    """The canvas is not a ring slot: nothing to release."""
