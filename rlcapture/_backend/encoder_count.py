"""How many encoder processes a recording starts when it is not told: ``encoders="auto"``.

Every recorded frame costs ``render_ms`` of CPU in a worker and ``encode_ms``
in an encoder (conversion, x264, muxing), so of the CPU a recording uses a
share ``encode_ms / (render_ms + encode_ms)`` goes to encoding. The rule gives
the encoders that share of the envs, one encoder per
``(render_ms + encode_ms) / encode_ms`` envs:

    k = ceil(envs * encode_ms / (render_ms + encode_ms)), between 1 and min(cores, envs)

Why per env and not per core: the vector step is synchronous, so each step
hands the encoders a burst of one frame per env, and an encoder is one
process that the scheduler treats like a worker. With 16 workers on 2 cores
one encoder gets about a seventeenth of the CPU while they run, falls behind,
fills the rings and stalls the step (measured at N=16 before the encoder
got cheaper: 64 % of the ceiling with one encoder, 99 % with two (issue 11);
69 %, 78 %, 94 % with one, two, three ("Encoder shards" in
``benchmarks/RESULTS.md``)). Giving the
encoders their share of processes gives them their share of the CPU. More
encoders than cores (or than envs) would only switch between each other.

With CartPole's costs (render 3.2 ms, encode 1.0 ms, measured on the 2-core
machine of ``benchmarks/RESULTS.md``) that is one encoder per 4.2 envs: 1 for
1-4 envs, 2 for 5-8, 3 for 9-12, 4 for 13-16, at most one per core
(``tests/test_encoder_count.py`` holds the table). Costs that are not known
are taken as CartPole's; the encode cost scales with the frame's pixels
(:func:`encode_ms_for`).

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
    need = envs * encode / (render + encode)
    k = math.ceil(need - 1e-9)  # a hair above an integer (rounding) stays that integer
    return max(1, min(k, cores, envs))
