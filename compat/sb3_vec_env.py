"""Run Stable-Baselines3's own VecEnv tests against rlcapture's SB3 adapter.

A drop-in is judged by the peer's own tests. This script exports SB3's test
files (``git show REF:tests/...`` from a local clone, nothing copied into this
project) to a temporary folder and runs, with pytest, the tests aimed at a
VecEnv:

- every test parametrized over VecEnv classes, in its ``SubprocVecEnv`` case,
  and every other test whose body builds one
  (``make_vec_env(..., vec_env_cls=SubprocVecEnv)``);
- the EvalCallback and evaluate_policy tests that build their evaluation
  ``DummyVecEnv([...])`` in the test itself (``test_callbacks.py``,
  ``test_utils.py::test_evaluate_*``): there the test module's
  ``DummyVecEnv`` is replaced too.

``--against ours`` replaces those classes by :class:`rlcapture.sb3.SB3VecEnv`
(over a ``CaptureVectorEnv`` of the same env functions, same-step
autoreset, recording into a temporary folder);
``--against subproc`` runs the same selection with SB3's ``SubprocVecEnv`` in
both places: the reference. The only adaptations: ``gymnasium.make``
defaults to ``render_mode="rgb_array"`` (both runs), and ours records each
vec env into its own temporary folder, an env that renders no arrays (a test
env without ``render``) drawing a blank frame.

Usage::

    python compat/sb3_vec_env.py --against ours       # rlcapture's adapter
    python compat/sb3_vec_env.py --against subproc    # SB3's SubprocVecEnv
    python compat/sb3_vec_env.py --against ours -- -x -k terminal_obs   # pytest options

The SB3 clone defaults to ``/work/.mirror/DLR-RM+stable-baselines3/repo``
(``--repo``; a bare repository is fine) and the ref to the tag of the installed
version (``v2.9.2``), else ``--ref``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_REPO = "/work/.mirror/DLR-RM+stable-baselines3/repo"
FILES = ["test_vec_envs.py", "test_utils.py", "test_callbacks.py", "test_dict_env.py", "test_her.py"]

# The conftest written next to the exported tests: it selects the tests and
# swaps the classes. Kept as text because it runs in SB3's test folder.
CONFTEST = '''
import functools
import inspect
import os
import shutil
import tempfile

import gymnasium as gym
import pytest
import stable_baselines3.common.vec_env as sb3_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

AGAINST = os.environ["SB3_COMPAT_AGAINST"]
_make = gym.make


@functools.wraps(_make)
def make_rgb_array(*args, **kwargs):
    kwargs.setdefault("render_mode", "rgb_array")
    return _make(*args, **kwargs)


gym.make = make_rgb_array

if AGAINST == "ours":
    from gymnasium.vector import AutoresetMode
    from rlcapture import CaptureVectorEnv
    from rlcapture.sb3 import SB3VecEnv

    _folders = []

    import numpy as np

    class RgbArray(gym.Wrapper):
        """The adaptation for an env that renders no arrays: a blank frame."""

        @property
        def render_mode(self):
            return "rgb_array"

        def render(self):
            return np.zeros((8, 8, 3), np.uint8)

    class Adapted:
        def __init__(self, fn):
            self.fn = fn

        def __call__(self):
            env = self.fn()
            return env if env.render_mode == "rgb_array" else RgbArray(env)

    class Candidate(SB3VecEnv):
        """SubprocVecEnv's signature, recording into a fresh temporary folder."""

        def __init__(self, env_fns, start_method=None):
            out = tempfile.mkdtemp(prefix="sb3-compat-")
            _folders.append(out)
            venv = CaptureVectorEnv(
                [Adapted(fn) for fn in env_fns],
                out,
                autoreset_mode=AutoresetMode.SAME_STEP,
                context=start_method,
                record=os.environ["SB3_COMPAT_RECORD"],
            )
            try:
                super().__init__(venv)
            except BaseException:
                venv.close()
                raise

    def pytest_sessionfinish(session, exitstatus):
        for folder in _folders:
            shutil.rmtree(folder, ignore_errors=True)
else:
    Candidate = SubprocVecEnv

sb3_vec_env.SubprocVecEnv = Candidate


def _builds(fn, name):
    try:
        return name in inspect.getsource(fn)
    except (OSError, TypeError):
        return False


def _evaluation_test(item):
    module = item.module.__name__.rsplit(".", 1)[-1]
    name = item.function.__name__
    if module == "test_callbacks" or (module == "test_utils" and name.startswith("test_evaluate")):
        return _builds(item.function, "DummyVecEnv(")
    return False


def _vec_env_classes(item):
    """The VecEnv classes among the test's parameters."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return [v for v in params.values() if isinstance(v, type) and issubclass(v, sb3_vec_env.VecEnv)]


def pytest_collection_modifyitems(config, items):
    keep = []
    for item in items:
        classes = _vec_env_classes(item)
        if classes:  # parametrized over VecEnv classes: the SubprocVecEnv case only
            if Candidate in classes:
                keep.append(item)
        elif _builds(item.function, "SubprocVecEnv"):
            keep.append(item)
        elif _evaluation_test(item):
            item.add_marker("sb3_compat_dummy")
            keep.append(item)
    items[:] = keep


@pytest.fixture(autouse=True)
def _swap(request, monkeypatch):
    module = request.module
    if hasattr(module, "SubprocVecEnv"):
        monkeypatch.setattr(module, "SubprocVecEnv", Candidate)
    if request.node.get_closest_marker("sb3_compat_dummy") is not None:
        monkeypatch.setattr(module, "DummyVecEnv", Candidate)
'''


def _git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True, text=True
    ).stdout


def default_ref(repo: str) -> str:
    """The tag of the installed SB3 version, else the newest commit of the clone."""
    import stable_baselines3

    tag = f"v{stable_baselines3.__version__}"
    tags = set(_git(repo, "tag").split())
    if tag in tags:
        return tag
    head = _git(repo, "rev-parse", "HEAD").strip()
    version = _git(repo, "show", f"{head}:stable_baselines3/version.txt").strip()
    print(
        f"sb3_vec_env: no tag {tag} in {repo}; using HEAD {head[:10]} (version {version})",
        file=sys.stderr,
    )
    return head


def export(repo: str, ref: str, folder: Path) -> None:
    """Write SB3's test files at ``ref`` and our conftest into ``folder``."""
    tests = folder / "tests"
    tests.mkdir(parents=True)
    (tests / "__init__.py").write_text("")
    for name in FILES:
        (tests / name).write_text(_git(repo, "show", f"{ref}:tests/{name}"))
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    sb3_compat_dummy: DummyVecEnv swapped as well\n"
        "filterwarnings =\n    ignore::DeprecationWarning\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", choices=("ours", "subproc"), default="ours")
    parser.add_argument("--repo", default=DEFAULT_REPO, help="a clone of DLR-RM/stable-baselines3")
    parser.add_argument("--ref", help="tag or commit of its tests (default: the installed version's tag)")
    parser.add_argument(
        "--record",
        default="all",
        help="which episodes ours records: all (default) or none (then envs that render "
        "non-uint8 frames, refused when recorded, are tested for the rest)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the exported folder")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    ref = args.ref or default_ref(args.repo)
    folder = Path(tempfile.mkdtemp(prefix="sb3-tests-"))
    export(args.repo, ref, folder)
    env = dict(os.environ)
    env["SB3_COMPAT_AGAINST"] = args.against
    env["SB3_COMPAT_RECORD"] = args.record
    project = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (project, env.get("PYTHONPATH")) if p)
    env.setdefault("SDL_VIDEODRIVER", "dummy")
    env.setdefault("SDL_AUDIODRIVER", "dummy")
    paths = [a for a in args.pytest_args if a.startswith("tests")]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"]
    cmd += ([] if paths else ["tests"]) + args.pytest_args
    print(f"sb3_vec_env: SB3 tests at {ref} against {args.against} in {folder}", file=sys.stderr)
    try:
        return subprocess.run(cmd, cwd=folder, env=env).returncode
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(folder)], check=False)


if __name__ == "__main__":
    sys.exit(main())
