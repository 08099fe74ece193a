"""``rlcapture replay DIR --env E --episode K``: render one recorded episode again."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .._backend.manifest import MANIFEST
from .._backend.run_folder import RUN_FILE
from .args import bounded

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``replay`` to the ``rlcapture`` parser's subparsers."""
    rep = sub.add_parser(
        "replay",
        help="re-create one recorded episode and render it into a new video",
        description="Re-create an episode from its seed (or its env generator's state) and "
        "the run's run.json, and render it into a new video.",
    )
    rep.add_argument("dir", help=f"a recording's folder (holding {MANIFEST} and {RUN_FILE})")
    rep.add_argument("--env", type=bounded(int, 0, 10**7, "--env"), default=0, help="env index (default 0)")
    rep.add_argument(
        "--episode", type=bounded(int, 0, 10**9, "--episode"), default=0, help="that env's episode (default 0)"
    )
    rep.add_argument(
        "--env-id", help="the env to make (an id or module:Env) when the run's run.json names none"
    )
    rep.add_argument("--policy", help="default: the run's (random, sb3:ALGO:path.zip or module:callable)")
    rep.add_argument("--stochastic", action="store_true", help="SB3 policies: sample actions")
    rep.add_argument("--out", "-o", help="the new video (default DIR/replays/envE-episodeK.mp4)")
    rep.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    rep.set_defaults(run=run)
    return rep


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``rlcapture replay``: 0 if the replay matches the manifest, 1 if not."""
    from ..replay import replay

    result = replay(
        args.dir,
        args.env,
        args.episode,
        policy=args.policy,
        out=args.out,
        deterministic=False if args.stochastic else None,
        overwrite=args.overwrite,
        env_id=args.env_id,
    )
    head = f"replayed env {args.env} episode {args.episode}: return {result.ret:g}, length {result.length}"
    if result.matches:
        print(f"{head} (as recorded)", file=stdout)
    else:
        print(
            f"{head}; the manifest says return {result.recorded_return}, length "
            f"{result.recorded_length}: the replay went another way (a policy or env that "
            "is not deterministic?)",
            file=stdout,
        )
    print(f"  video    {result.video} ({result.frames} frames)", file=stdout)
    return 0 if result.matches else 1
