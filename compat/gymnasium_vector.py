"""Run Gymnasium's own ``tests/vector`` suite against ``CaptureVectorEnv``.

A drop-in must pass the tests its model passes. This script exports
Gymnasium's ``tests/`` folder (from the mirror of its repository, at the tag of
the installed version) to a temporary folder, runs it twice with pytest, once
as it is and once with ``gymnasium.vector.AsyncVectorEnv`` replaced by
:class:`AsAsync` (``CaptureVectorEnv`` under AsyncVectorEnv's signature), and
reports how many of the tests AsyncVectorEnv passes also pass with ours,
listing the others by cause. Nothing of Gymnasium's is copied into this
repository.

The only adaptations are those a user makes: every env records into an output
folder, and an env that cannot render to an array (``render_mode`` None) is
given one with a black frame, since rlcapture records ``rgb_array`` envs only.

Usage::

    PYTHONPATH=$PWD python compat/gymnasium_vector.py [--repo GIT_DIR] [--ref REF] [-k EXPR]

When pytest loads this module as a plugin (``-p gymnasium_vector``, which the
script does for the second run) it makes the substitution.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

MIRROR = Path("/work/.mirror/Farama-Foundation+Gymnasium/repo")
_OUT_ENV = "RLCAPTURE_COMPAT_OUT"


# -- the substitution (pytest plugin) ---------------------------------------------------
def _framed(fn: Any) -> Any:
    """``fn``, with a black frame for envs that cannot render to an array.

    Set on the env itself, not by a wrapper, which would change where
    ``set_attr`` lands for attributes the env does not have yet.
    """
    import numpy as np

    def black() -> np.ndarray:
        return np.zeros((8, 8, 3), np.uint8)

    def make() -> Any:
        env = fn()
        if env.render_mode is None:
            env.unwrapped.render_mode = "rgb_array"
            env.render = black
        return env

    return make


def _as_async() -> type:
    import gymnasium as gym

    from rlcapture import CaptureVectorEnv

    class AsAsync(CaptureVectorEnv):
        """``CaptureVectorEnv`` under AsyncVectorEnv's signature, recording into a temp folder."""

        count = 0

        def __init__(
            self,
            env_fns: Any,
            shared_memory: bool = True,
            copy: bool = True,
            context: str | None = None,
            daemon: bool = True,
            worker: Any = None,
            observation_mode: Any = "same",
            autoreset_mode: Any = gym.vector.AutoresetMode.NEXT_STEP,
            max_concurrency: int | None = None,
        ) -> None:
            if worker is not None:
                raise NotImplementedError("rlcapture: a custom worker function is not supported")
            if max_concurrency is not None:
                raise NotImplementedError("rlcapture: max_concurrency is not supported")
            AsAsync.count += 1
            out = Path(os.environ[_OUT_ENV]) / f"run{os.getpid()}-{AsAsync.count}"
            with open(Path(os.environ[_OUT_ENV]) / "used.txt", "a") as used:
                used.write(_CURRENT[0] + "\n")  # this test uses AsyncVectorEnv
            self.env_fns = env_fns
            given = {
                "shared_memory": shared_memory,
                "observation_mode": observation_mode,
                "autoreset_mode": autoreset_mode,
            }
            # Only what this version of CaptureVectorEnv takes (so the harness
            # also measures versions before these options existed).
            known = inspect.signature(CaptureVectorEnv.__init__).parameters
            defaults = {"shared_memory": True, "observation_mode": "same"}
            for name in [n for n in given if n not in known]:
                if given[name] != defaults.get(name, given[name]):
                    raise NotImplementedError(f"rlcapture: {name}={given[name]!r} is not supported")
                del given[name]
            super().__init__(
                [_framed(fn) for fn in env_fns],
                out,
                copy=copy,
                context=context,
                overwrite=True,
                **given,
            )

    return AsAsync


_CURRENT = [""]  # the test running now


def pytest_runtest_setup(item: Any) -> None:
    _CURRENT[0] = _key(item.nodeid)


def _key(nodeid: str) -> str:
    """A pytest node id as JUnit XML names the test: ``package.module.Class::name``."""
    path, _, rest = nodeid.partition(".py::")
    head = rest.split("[", 1)[0]  # parameters may hold "::"
    parts = head.split("::")
    return ".".join([path.replace("/", "."), *parts[:-1]]) + "::" + parts[-1] + rest[len(head) :]


def pytest_configure(config: Any) -> None:
    """Replace AsyncVectorEnv wherever Gymnasium and its tests look it up."""
    if not os.environ.get(_OUT_ENV):
        return
    import gymnasium.vector
    import gymnasium.vector.async_vector_env

    cls = _as_async()
    cls.__name__ = "AsyncVectorEnv"
    gymnasium.vector.AsyncVectorEnv = cls
    gymnasium.vector.async_vector_env.AsyncVectorEnv = cls


# -- the harness ----------------------------------------------------------------------
def _ref(repo: Path) -> str:
    """The tag of the installed Gymnasium, else the main branch if it is that version."""
    import gymnasium

    version = gymnasium.__version__
    tags = subprocess.run(["git", "-C", str(repo), "tag"], capture_output=True, text=True).stdout.split()
    if f"v{version}" in tags:
        return f"v{version}"
    main = subprocess.run(
        ["git", "-C", str(repo), "show", "HEAD:gymnasium/__init__.py"], capture_output=True, text=True
    ).stdout
    if f'__version__ = "{version}"' in main:
        return "HEAD"
    return sorted(tags, key=lambda t: [int(x) for x in re.findall(r"\d+", t)])[-1]


def _export(repo: Path, ref: str, dest: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", ref, "tests"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _run(dest: Path, ours: bool, k: str | None, timeout: int) -> dict[str, tuple[str, str]]:
    """Outcome (passed/failed/error/skipped, first line of the failure) of each test.

    With ``ours``, ``dest/videos/used.txt`` names the tests that made an AsyncVectorEnv.
    """
    xml = dest / ("ours.xml" if ours else "ref.xml")
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(dest), here, env.get("PYTHONPATH", "")) if p)
    env.pop(_OUT_ENV, None)
    args = [sys.executable, "-m", "pytest", "tests/vector", "-q", "-p", "no:cacheprovider",
            f"--junitxml={xml}", f"--timeout={timeout}", "--rootdir", str(dest)]  # fmt: skip
    if k:
        args += ["-k", k]
    if ours:
        out = dest / "videos"
        out.mkdir(exist_ok=True)
        env[_OUT_ENV] = str(out)
        args += ["-p", "gymnasium_vector"]
    subprocess.run(args, cwd=dest, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome, why = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                why = (child.get("message") or "").strip().splitlines()[0][:160] if child.get("message") else ""
                break
        results[name] = (outcome, why)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=MIRROR, help="Gymnasium's git directory")
    parser.add_argument("--ref", help="tag or commit of its tests (default: the installed version's)")
    parser.add_argument("-k", help="pytest -k expression")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per test")
    args = parser.parse_args(argv)
    ref = args.ref or _ref(args.repo)
    with tempfile.TemporaryDirectory(prefix="rlcapture-gym-") as tmp:
        dest = Path(tmp)
        _export(args.repo, ref, dest)
        ref_results = _run(dest, False, args.k, args.timeout)
        ours = _run(dest, True, args.k, args.timeout)
        used_file = dest / "videos" / "used.txt"
        used = set(used_file.read_text().splitlines()) if used_file.exists() else set()
    passing = [t for t, (o, _) in ref_results.items() if o == "passed"]
    kept = [t for t in passing if ours.get(t, ("missing", ""))[0] == "passed"]
    async_passing = [t for t in passing if t in used]
    async_kept = [t for t in async_passing if t in kept]
    print(f"Gymnasium tests/vector at {ref}: {len(ref_results)} tests, {len(passing)} pass as they are")
    print(f"  {len(kept)} of those {len(passing)} pass with CaptureVectorEnv in AsyncVectorEnv's place")
    print(
        f"  of the {len(async_passing)} that make an AsyncVectorEnv and pass with it, "
        f"{len(async_kept)} pass with CaptureVectorEnv"
    )
    causes: dict[str, list[str]] = collections.defaultdict(list)
    for t in passing:
        outcome, why = ours.get(t, ("missing", ""))
        if outcome != "passed":
            causes[f"{outcome}: {why}"].append(t)
    for why, tests in sorted(causes.items(), key=lambda kv: -len(kv[1])):
        print(f"\n  {len(tests)} x {why}")
        for t in tests:
            print(f"      {t}")
    return 0 if len(kept) == len(passing) else 1


if __name__ == "__main__":
    sys.exit(main())
