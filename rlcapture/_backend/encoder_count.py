"""How many encoder processes a recording starts when it is not told: ``encoders="auto"``.

Every recorded frame costs ``render_ms`` of CPU in a worker and ``encode_ms``
in an encoder (conversion, x264, muxing). A machine with ``cores`` usable
cores and ``envs`` envs rendering cannot record more than
``min(cores, envs) / (render_ms + encode_ms)`` frames per ms, and at that rate
the encoders need ``min(cores, envs) * encode_ms / (render_ms + encode_ms)``
cores between them. One encoder is one process: it uses at most one core,
and when workers outnumber cores it shares that core with them, getting
part of it. So:

- ``need`` = ``busy * encode_ms / (render_ms + encode_ms)`` with
  ``busy = min(cores, envs)``: cores' worth of encoding at the ceiling;
- when workers outnumber cores, the scheduler shares a core between an
  encoder and the workers waiting for it: with ``envs > cores`` the rule asks
  for twice ``need`` (an encoder then gets about half a core);
- the count is ``ceil`` of that, at least 1, at most ``min(cores, envs)``
  (more encoders than cores or envs only switch between each other).

With CartPole's costs (render 3.2 ms, encode 1.0 ms, measured on the 2-core
machine of ``benchmarks/RESULTS.md``) that is 1 encoder for up to 2 envs on
2 cores and 2 for more envs than cores; on 16 cores, 1 for 1-3 envs, 2 for
4-7, 4 for 8-15 and 8 for 16 or more envs (``tests/test_encoder_count.py``
holds the table).

Outputs that need every env in one process (the mosaic, ranked keep rules)
make it 1.
"""

from __future__ import annotations

import math
import os

__all__ = ["auto_encoders", "usable_cores", "RENDER_MS", "ENCODE_MS"]

#: CPU ms to render a frame when nothing better is known (CartPole 600x400, measured).
RENDER_MS = 3.2
#: CPU ms to encode a 600x400 frame (OpenCV conversion + x264 ultrafast + mux, measured).
ENCODE_MS = 1.0
#: Pixels of the frame ENCODE_MS was measured on: encoding scales with them.
_ENCODE_PIXELS = 600 * 400


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def encode_ms_for(pixels: int | None) -> float:
    """The encode cost of a frame of ``pixels`` pixels (None: a 600x400 frame)."""
    if not pixels:
        return ENCODE_MS
    return ENCODE_MS * pixels / _ENCODE_PIXELS


def auto_encoders(
    envs: int | None,
    cores: int | None = None,
    render_ms: float | None = None,
    encode_ms: float | None = None,
    single: bool = False,
) -> int:
    """The encoder count for ``envs`` envs on ``cores`` cores (see the module docstring).

    Args:
        envs: Envs recorded at once (None: unknown, taken as ``cores``).
        cores: Usable cores (None: :func:`usable_cores`).
        render_ms: CPU ms to render a frame (None: :data:`RENDER_MS`).
        encode_ms: CPU ms to encode one (None: :data:`ENCODE_MS`).
        single: An output needs every env in one encoder (mosaic, ranked keep rules).

    Returns:
        An integer from 1 to ``min(cores, envs)``; the same inputs give the same count.
    """
    if single:
        return 1
    cores = usable_cores() if cores is None else max(1, int(cores))
    envs = cores if envs is None else max(1, int(envs))
    render = RENDER_MS if render_ms is None else max(0.0, float(render_ms))
    encode = ENCODE_MS if encode_ms is None else max(0.0, float(encode_ms))
    if render + encode <= 0:
        return 1
    busy = min(cores, envs)
    need = busy * encode / (render + encode)
    if envs > cores:
        need *= 2
    # a hair below an integer stays there (0.5 * 2 = 1.0000000001 is 1)
    k = math.ceil(need - 1e-9)
    return max(1, min(k, busy))
