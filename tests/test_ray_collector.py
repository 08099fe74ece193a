"""The episode collector without a cluster: settle once, evict, final names, files copied in.

Task folders are made here as an actor's evaluate leaves them (a manifest
line per episode, its video under ``videos/``); the collector is handed the
lines as the driver hands them, and the output folder is checked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rlcapture._backend.keep import KeepPolicy, parse_keep
from rlcapture._backend.manifest import ManifestWriter, read_manifest
from rlcapture.cluster.collector import EpisodeCollector, final_names, read_task_lines
from rlcapture.cluster.fleet import Actor
from rlcapture.cluster.plan import Task, TaskPlan
from rlcapture.cluster.replies import Finished, Hello
from rlcapture.cluster.transfer import Transfers

SEEDS = [100, 101, 102, 103]
WHY = "pushed out of the best 1 by return"  # keep="best:1" evicting an episode


class Run:
    """A collector over ``SEEDS`` into ``tmp/out``, with what it reported."""

    def __init__(self, tmp: Path, keep: str = "all", prefix: str = "") -> None:
        self.out = tmp / "out"
        self.out.mkdir()
        self.plan = TaskPlan(SEEDS, 2)
        self.transfers = Transfers(chunk=4)
        self.episodes: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.progress: list[tuple[int, int]] = []
        self.files_in: list[int] = []
        self.manifest = ManifestWriter(str(self.out / "episodes.jsonl"))
        self.collector = EpisodeCollector(
            self.out, self.plan, KeepPolicy(parse_keep(keep)), self.transfers, self.manifest, prefix,
            self.episodes, self.events, lambda done, steps: self.progress.append((done, steps)), self.files_in.append,
        )  # fmt: skip

    def lines(self) -> list[dict[str, Any]]:
        return read_manifest(self.out / "episodes.jsonl")

    def copy_all(self) -> None:
        """Serve every chunk request from the remote file, as the actor's ``read`` would."""
        while True:
            requests = list(self.transfers.requests())
            if not requests:
                return
            for copy, offset, length in requests:
                with open(copy.remote, "rb") as f:
                    data = os.pread(f.fileno(), length, offset)
                if self.transfers.received(copy, offset, data, length):
                    self.collector.file_in(copy)


def actor(index: int = 0, shared: bool = True) -> Actor:
    a = Actor(index, None, 0.0, info=Hello("feedfacecafebeef00", "10.0.0.9", "h", 9))
    a.shared = shared
    return a


def task_episode(folder: Path, seed: int, ret: float, episode: int, end: str = "truncated") -> Finished:
    """An episode as a task's evaluate leaves it: its video, and the line naming it."""
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    video = folder / "videos" / f"env0-ep{episode}.mp4"
    video.write_bytes(bytes(range(10)) * (seed - 99))
    record = {"env": 0, "episode": episode, "seed": seed, "return": ret, "length": 5, "end": end,
              "frames": 6, "video": f"videos/env0-ep{episode}.mp4"}  # fmt: skip
    with open(folder / "episodes.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    return Finished(record, [(record["video"], video.stat().st_size)])


def test_final_names_follow_the_seed_and_the_prefix():
    record = {"video": "videos/env1-ep3.mp4", "images": "frames/env1-ep3",
              "keyframes": ["keyframes/env1-ep3-step0.png", "keyframes/env1-ep3-step9.png"]}  # fmt: skip
    files = [("videos/env1-ep3.mp4", 10), ("frames/env1-ep3/000000.png", 5)]
    names = final_names(record, files, "evalseed7")
    assert names == {
        "videos/env1-ep3.mp4": "videos/evalseed7.mp4",
        "frames/env1-ep3/000000.png": "frames/evalseed7/000000.png",
        "frames/env1-ep3": "frames/evalseed7",
        "keyframes/env1-ep3-step0.png": "keyframes/evalseed7-step0.png",
        "keyframes/env1-ep3-step9.png": "keyframes/evalseed7-step9.png",
    }
    assert final_names({"video": None}, [], "seed1") == {}


def test_an_episode_is_settled_once_under_its_seeds_name(tmp_path):
    run = Run(tmp_path, prefix="p-")
    folder = tmp_path / "task0"
    task = Task(0, [100, 101])
    episode = task_episode(folder, 101, 3.0, 0)
    run.collector.collect(actor(), task, str(folder), episode, salvaged=False)
    (line,) = run.lines()
    assert (line["env"], line["episode"], line["seed"], line["seed_index"]) == (0, 1, 101, 1)
    assert (line["task_env"], line["task_episode"], line["task"], line["actor"]) == (0, 0, 0, 0)
    assert line["node"] == "feedfacecafe" and line["video"] == "videos/p-seed101.mp4"
    assert (run.out / "videos" / "p-seed101.mp4").read_bytes() == bytes(range(10)) * 2
    assert not (folder / "videos" / "env0-ep0.mp4").exists()  # renamed, not copied
    assert run.progress == [(1, 5)] and run.plan.settled == {101}
    # The same seed again (a re-run's duplicate, or a salvaged line): nothing more.
    again = task_episode(tmp_path / "task1", 101, 3.0, 0)
    run.collector.collect(actor(1), Task(1, [101]), str(tmp_path / "task1"), again, salvaged=False)
    assert len(run.lines()) == 1 and len(run.episodes) == 1 and run.progress == [(1, 5)]


def test_salvage_keeps_what_a_dead_actor_finished_and_leaves_the_rest_to_run_again(tmp_path):
    run = Run(tmp_path)
    folder = tmp_path / "task0"
    task_episode(folder, 100, 1.0, 0)
    task_episode(folder, 102, 1.0, 1, end="error")  # cut short by the actor's death
    with open(folder / "episodes.jsonl", "a") as f:
        f.write('{"env": 0, "episode": 1, "update": true, "kept": false}\n{"env": 0, "epis')  # torn
    assert [r["seed"] for r in read_task_lines(str(folder))] == [100, 102]
    dead = actor()
    dead.folder = str(folder)
    assert run.collector.salvage(dead, Task(0, [100, 102])) == 1
    assert [r["seed"] for r in run.lines()] == [100] and run.plan.settled == {100}


def test_an_unknown_seed_is_named_and_ignored(tmp_path):
    run = Run(tmp_path)
    folder = tmp_path / "task0"
    run.collector.collect(actor(), Task(0, [100]), str(folder), task_episode(folder, 999, 1.0, 0), salvaged=False)
    assert run.lines() == [] and run.events == [
        "actor 0 on node feedfacecafe (10.0.0.9, pid 9) wrote an episode with an unknown seed 999; ignored"
    ]


def test_a_later_better_episode_evicts_a_kept_one(tmp_path):
    run = Run(tmp_path, keep="best:1")
    folder = tmp_path / "task0"
    task = Task(0, SEEDS)
    run.collector.collect(actor(), task, str(folder), task_episode(folder, 100, 1.0, 0), salvaged=False)
    assert (run.out / "videos" / "seed100.mp4").exists()
    run.collector.collect(actor(), task, str(folder), task_episode(folder, 101, 5.0, 1), salvaged=False)
    run.collector.collect(actor(), task, str(folder), task_episode(folder, 102, 0.5, 2), salvaged=False)
    assert sorted(os.listdir(run.out / "videos")) == ["seed101.mp4"]
    raw = read_manifest(run.out / "episodes.jsonl", raw=True)
    assert {k: raw[2][k] for k in ("env", "episode", "update", "kept")} == {"env": 0, "episode": 0, "update": True, "kept": False}
    lines = run.lines()
    assert [(r["seed"], r["kept"], r["video"]) for r in lines] == [
        (100, False, None), (101, True, "videos/seed101.mp4"), (102, False, None)
    ]


def test_streamed_files_are_written_when_the_last_is_in(tmp_path):
    run = Run(tmp_path)
    folder = tmp_path / "scratch" / "task0"
    remote = actor(shared=False)
    run.collector.collect(remote, Task(0, [100, 101]), str(folder), task_episode(folder, 101, 2.0, 0), salvaged=False)
    assert run.lines() == [] and run.collector.in_flight(101) and run.collector.holds(str(folder))
    assert not run.collector.holds(str(tmp_path / "scratch" / "task"))  # a prefix is not its folder
    run.copy_all()
    (line,) = run.lines()
    assert line["video"] == "videos/seed101.mp4" and run.files_in == [0]
    assert (run.out / "videos" / "seed101.mp4").read_bytes() == bytes(range(10)) * 2
    assert (folder / "videos" / "env0-ep0.mp4").exists()  # copied: the actor removes its folder
    assert not run.collector.in_flight(101) and not list(run.out.rglob("*.part"))


def test_an_episode_evicted_while_its_files_come_is_written_without_them(tmp_path):
    run = Run(tmp_path, keep="best:1")
    folder = tmp_path / "scratch" / "task0"
    remote, task = actor(shared=False), Task(0, SEEDS)
    run.collector.collect(remote, task, str(folder), task_episode(folder, 100, 1.0, 0), salvaged=False)
    run.collector.collect(remote, task, str(folder), task_episode(folder, 101, 5.0, 1), salvaged=False)
    run.copy_all()
    assert sorted(os.listdir(run.out / "videos")) == ["seed101.mp4"]
    assert [(r["seed"], r["kept"]) for r in run.lines()] == [(100, False), (101, True)]
    assert run.lines()[0]["why"] == WHY


def test_a_dead_actors_files_on_their_way_send_their_seeds_back(tmp_path):
    run = Run(tmp_path)
    folder = tmp_path / "scratch" / "task0"
    remote = actor(index=2, shared=False)
    task = Task(0, SEEDS)
    for j, seed in enumerate((100, 103)):
        run.collector.collect(remote, task, str(folder), task_episode(folder, seed, 1.0, j), salvaged=False)
    requests = list(run.transfers.requests())  # the first chunks are asked for, then the actor dies
    assert requests and list((run.out / "videos").glob("*.part"))
    assert run.collector.drop(1) == []  # another actor: nothing of it
    assert sorted(run.collector.drop(2)) == [100, 103]
    assert run.collector.pending == {} and not list(run.out.rglob("*.part")) and run.lines() == []
    assert not run.transfers.queue
