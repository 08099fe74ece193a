"""Every observation space AsyncVectorEnv takes, through shared memory or the pipes.

The test is Gymnasium's own ``test_vector_obs_action_spaces``
(``tests/vector/test_vector_env.py``), written again over spaces of each kind
(``compat/gymnasium_vector.py`` runs the original against this class): the
vector env is made as AsyncVectorEnv is, with shared memory asked for, without
it, and (ours only) with it left out; a space shared memory cannot hold raises
Gymnasium's ``TypeError`` only when shared memory was asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv

from rlcapture import CaptureVectorEnv

DYNAMIC = "has a dynamic shape so its not possible to make a static shared memory."


class Custom(gym.Space):
    """A space Gymnasium knows nothing about (no shared memory registered for it)."""

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        return "x"

    def contains(self, x: Any) -> bool:
        return x == "x"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom)

    def __hash__(self) -> int:
        return 0


SPACES = {
    "box": spaces.Box(-1.0, 1.0, (2, 3), np.float32),
    "dict": spaces.Dict({"a": spaces.Discrete(3), "b": spaces.MultiBinary(4)}),
    "text": spaces.Text(5),
    "sequence": spaces.Sequence(spaces.Discrete(4)),
    "graph": spaces.Graph(spaces.Box(0.0, 1.0, (2,)), spaces.Discrete(3)),
    "dict-of-sequence": spaces.Dict(
        {"s": spaces.Sequence(spaces.Box(0, 1, (2,))), "d": spaces.Discrete(2)}
    ),
    "oneof": spaces.OneOf((spaces.Discrete(3), spaces.Box(-1, 1, (2,)))),
    "custom": Custom(),
}
VECTORISERS = {
    "shared memory": {"shared_memory": True},
    "pipes": {"shared_memory": False},
    "unasked": {},
}


class Echo(gym.Env):
    """Observes and acts in ``space``; renders a black frame."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, space: gym.Space) -> None:
        self.observation_space = self.action_space = space
        self.render_mode = "rgb_array"

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        assert action in self.action_space
        return self.observation_space.sample(), 0.0, False, False, {}

    def render(self) -> np.ndarray:
        return np.zeros((8, 8, 3), np.uint8)


def _make(space: gym.Space) -> Any:
    return lambda: Echo(space)


@pytest.mark.parametrize("how", sorted(VECTORISERS))
@pytest.mark.parametrize("name", sorted(SPACES))
def test_vector_obs_action_spaces(tmp_path: Path, name: str, how: str) -> None:
    space, kwargs = SPACES[name], VECTORISERS[how]
    fns = [_make(space)] * 3
    try:
        envs = CaptureVectorEnv(fns, tmp_path / "out", envs_per_worker=3, record="none", **kwargs)
    except TypeError as err:
        assert kwargs.get("shared_memory") is True, err  # only when asked for
        assert DYNAMIC in str(err)
        with pytest.raises(TypeError, match=DYNAMIC):  # as AsyncVectorEnv raises it
            AsyncVectorEnv(fns, shared_memory=True)
        return
    except ValueError as err:  # a custom space in shared memory: AsyncVectorEnv's ValueError too
        assert name == "custom" and kwargs.get("shared_memory") is True, err
        with pytest.raises(ValueError, match="shared_memory=False"):
            AsyncVectorEnv(fns, shared_memory=True)
        return
    try:
        assert envs.observation_space == envs.action_space
        assert envs.shared_memory == (
            kwargs.get("shared_memory", True) and name in ("box", "dict", "text", "oneof")
        )
        obs, _ = envs.reset(seed=1)
        assert obs in envs.observation_space
        for _ in range(2):
            obs, *_ = envs.step(envs.action_space.sample())
            assert obs in envs.observation_space
    finally:
        envs.close()
