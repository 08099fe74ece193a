"""The state of an env's random generator, as JSON, so an unseeded episode can be replayed.

A drop-in vector env must not reseed the episodes its caller leaves unseeded
(autoresets, ``reset()`` without a seed): Gymnasium lets such a reset draw from
the env's generator as it stands, and reseeding changes the trajectories. What
makes such an episode replayable instead is the generator's state just before
its reset: restore it into a fresh env, reset without a seed, and the env draws
the same numbers. :func:`generator_state` reads it as plain JSON (PCG64's is a
dict of two 128-bit integers; arrays, as in MT19937's, become lists), and
:func:`restore_generator` puts it back.

Only ``env.unwrapped.np_random`` is covered: an env whose randomness lives
elsewhere (a simulator with its own generator, seeded only by ``reset(seed=...)``)
is replayed exactly only from a seeded episode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["generator_state", "restore_generator"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"__array__": value.dtype.str, "data": value.tolist()}
    if isinstance(value, np.integer):
        return int(value)
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__array__" in value and "data" in value:
            return np.asarray(value["data"], dtype=np.dtype(value["__array__"]))
        return {k: _from_json(v) for k, v in value.items()}
    return value


def generator_state(env: Any) -> dict[str, Any] | None:
    """The state of ``env.unwrapped.np_random`` as JSON, or None if it has none.

    Gymnasium makes an env's generator lazily (from fresh entropy) the first
    time it is used; reading it here makes it, which is what the env's first
    unseeded reset would have done, so nothing changes for the env.
    """
    try:
        generator = env.unwrapped.np_random
        state = generator.bit_generator.state
    except Exception:  # noqa: BLE001 - an env without a numpy generator: nothing to record
        return None
    return _jsonable(state)


def restore_generator(env: Any, state: dict[str, Any]) -> None:
    """Give ``env.unwrapped`` a generator in ``state`` (one :func:`generator_state` returned).

    Raises:
        ValueError: The state names a bit generator numpy does not have.
    """
    state = _from_json(state)
    name = state.get("bit_generator")
    cls = getattr(np.random, str(name), None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, np.random.BitGenerator):
        raise ValueError(f"unknown bit generator {name!r} in the recorded generator state")
    bit_generator = cls()
    bit_generator.state = state
    env.unwrapped.np_random = np.random.Generator(bit_generator)
