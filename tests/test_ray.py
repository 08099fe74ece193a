"""Evaluation on a real Ray cluster of three nodes on this machine (head + 2 workers, one CPU each).

One cluster serves the whole module (starting one costs several seconds);
the test that removes a node adds one back. Every run is compared with a local
:func:`rlcapture.evaluate` of the same seeds: each episode's (seed, return,
length) must be the same whichever node ran it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psutil
import pytest

ray = pytest.importorskip("ray")
from conftest import REPO, decode, read_manifest  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray_envs import STEPS, Failing, SlowCartPole  # noqa: E402

import rlcapture  # noqa: E402
from rlcapture import ConfigError, EnvError  # noqa: E402
from rlcapture.cluster import RayEvaluation, evaluate_on_ray  # noqa: E402
from rlcapture.cluster.fleet import ActorState  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    # Ray's processes inherit this: the actors import rlcapture and ray_envs as the tests do.
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "tests"), saved]))
    # Nodes are declared dead after about a second without a health check (Ray's default:
    # 30 s), and workers run at the tests' priority (Ray's default: nice 15, slow on a busy machine).
    system = {
        "health_check_period_ms": 300, "health_check_failure_threshold": 3, "health_check_timeout_ms": 300,
        "worker_niceness": 0,
    }
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": system})
    try:
        for _ in range(2):
            c.add_node(num_cpus=1)
        ray.init(address=c.address, include_dashboard=False, logging_level="ERROR")
        c.wait_for_nodes()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        left = [p for p in psutil.Process().children(recursive=True) if _is_ray(p)]
        assert not left, f"Ray processes left after the cluster's shutdown: {left}"
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _is_ray(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE and ("ray" in p.name() or "ray::" in " ".join(p.cmdline()))
    except psutil.NoSuchProcess:
        return False


_LOCAL: dict[tuple[int, ...], list[tuple[int, float, int]]] = {}


def local_episodes(seeds: range, tmp_path) -> list[tuple[int, float, int]]:
    """(seed, return, length) of a local evaluate with two envs, once per seed list."""
    key = tuple(seeds)
    if key not in _LOCAL:
        res = rlcapture.evaluate(SlowCartPole(), seeds=seeds, num_envs=2, out=tmp_path / "local")
        _LOCAL[key] = sorted((e.seed, e.ret, e.length) for e in res.episodes)
    return _LOCAL[key]


def triples(records: list[dict[str, Any]]) -> list[tuple[int, float, int]]:
    return sorted((r["seed"], float(r["return"]), r["length"]) for r in records)


def check_folder(out, result, seeds) -> list[dict[str, Any]]:
    """One manifest line per seed, each named file whole, nothing of the staging left."""
    lines = read_manifest(out)
    assert sorted(r["seed"] for r in lines if not r.get("update")) == list(seeds)
    assert [r["episode"] for r in result.episodes] == list(range(len(seeds)))
    for r in rlcapture.read_manifest(out / "episodes.jsonl"):
        if r.get("video"):
            assert decode(out / r["video"]).count == r["frames"]
    assert not (out / ".rlcapture-ray").exists()
    assert not list(out.rglob("*.part"))
    return lines


def test_same_episodes_as_a_local_run_on_shared_storage(cluster, tmp_path):
    seeds = range(100, 112)
    out = tmp_path / "ray"
    seen = []
    result = evaluate_on_ray(SlowCartPole(), seeds=seeds, num_envs=1, out=out, progress=lambda d, s: seen.append(d))
    assert result.storage == "shared" and result.streamed_bytes == 0
    assert len(result.nodes) == 3 and result.events == []
    assert triples(result.episodes) == local_episodes(seeds, tmp_path)
    lines = check_folder(out, result, seeds)
    assert sorted(os.listdir(out / "videos")) == sorted(f"seed{s}.mp4" for s in seeds)
    # Every line names a node of the cluster (an actor that started last may have found no task left).
    assert {r["node"] for r in lines} <= {n[:12] for n in result.nodes}
    assert seen == list(range(1, 13))
    evaluation = result.evaluation()  # the shape a local evaluate returns
    assert [(e.seed, e.ret, e.length) for e in evaluation.episodes] == local_episodes(seeds, tmp_path)
    assert evaluation.seeds == seeds and evaluation.episodes[0].video == out / "videos" / "seed100.mp4"
    run = json.loads((out / "run.json").read_text())
    assert run["ray"]["storage"] == "shared" and run["seeds"] == {"start": 100, "stop": 112, "step": 1}


def test_stream_mode_copies_files_in_chunks(cluster, tmp_path):
    seeds = range(100, 112)
    out, scratch = tmp_path / "ray", tmp_path / "scratch"
    scratch.mkdir()
    result = evaluate_on_ray(
        SlowCartPole(), seeds=seeds, num_envs=1, out=out, storage="stream", scratch=str(scratch), chunk_mib=1 / 512
    )
    assert result.storage == "stream"
    assert result.streamed_files == 12 and result.streamed_chunks > 12  # 2 KiB chunks: several per video
    assert result.streamed_bytes == sum(p.stat().st_size for p in (out / "videos").iterdir())
    assert triples(result.episodes) == local_episodes(seeds, tmp_path)
    check_folder(out, result, seeds)
    assert os.listdir(scratch) == []  # each node's scratch folder went with the run
    assert "copied to" in result.describe_storage()


@pytest.mark.parametrize("storage", ["shared", "stream"])
def test_keep_rules_hold_over_the_whole_cluster(cluster, tmp_path, storage):
    seeds = range(100, 112)
    out = tmp_path / "ray"
    result = evaluate_on_ray(
        SlowCartPole(), seeds=seeds, num_envs=1, out=out, storage=storage, scratch=str(tmp_path), keep="worst:2,best:1"
    )
    by_return = sorted(result.episodes, key=lambda r: (r["return"], r["episode"]))
    want = {r["seed"] for r in by_return[:2]} | {by_return[-1]["seed"]}
    ties = [r for r in result.episodes if r["return"] in (by_return[1]["return"], by_return[-1]["return"])]
    kept = {r["seed"] for r in result.episodes if r["kept"]}
    if len(ties) == 2:  # no ties at the edges: the rule picks exactly these
        assert kept == want
    assert len(kept) == 3
    assert sorted(os.listdir(out / "videos")) == sorted(f"seed{s}.mp4" for s in kept)
    check_folder(out, result, seeds)
    if storage == "stream":
        assert result.streamed_files <= 12  # discarded episodes may never be fetched


def test_an_actor_killed_mid_run_loses_nothing(cluster, tmp_path):
    seeds = range(200, 212)
    out = tmp_path / "ray"
    run = RayEvaluation(SlowCartPole(0.02), seeds=seeds, num_envs=1, out=out, task_size=6)
    killed = []

    def progress(done: int, steps: int) -> None:
        if done == 2 and not killed:
            victim = next(a for a in run.actors.values() if a.state is ActorState.BUSY)
            killed.append(victim.index)
            ray.kill(victim.handle, no_restart=True)

    run.progress = progress
    result = run.run()
    assert killed
    assert triples(result.episodes) == local_episodes(seeds, tmp_path)
    check_folder(out, result, seeds)
    assert any(f"actor {killed[0]} " in e and "died" in e and "went back to the queue" in e for e in result.events)
    assert result.actors >= 4  # a replacement was asked for


def test_ctrl_c_stops_the_cluster_and_leaves_whole_files(cluster, tmp_path):
    seeds = range(400, 424)
    out = tmp_path / "ray"

    def progress(done: int, steps: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    run = RayEvaluation(SlowCartPole(0.02), seeds=seeds, num_envs=1, out=out, progress=progress)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert run.result.interrupted and 3 <= len(run.result.episodes) < 24
    lines = read_manifest(out)
    assert len({r["seed"] for r in lines}) == len(lines) == len(run.result.episodes)
    for r in lines:
        assert decode(out / r["video"]).count == r["frames"]
    assert sorted(os.listdir(out / "videos")) == sorted(r["video"][len("videos/"):] for r in lines)
    assert not (out / ".rlcapture-ray").exists()
    # The cluster is free again: every actor of the run is gone.
    assert not [a for a in ray.util.list_named_actors() if a.startswith("rlcapture-")]


def test_a_node_without_the_envs_package_says_so(cluster, tmp_path):
    pkg = tmp_path / "driveronly"
    pkg.mkdir()
    source = ["import gymnasium as gym", "", "", "class Make:", "    def __call__(self):",
              "        return gym.make('CartPole-v1', render_mode='rgb_array')", ""]
    (pkg / "driver_only_env.py").write_text("\n".join(source))
    sys.path.insert(0, str(pkg))  # after ray.init: the actors' workers do not get it
    try:
        import driver_only_env

        with pytest.raises(EnvError) as err:
            evaluate_on_ray(driver_only_env.Make(), seeds=range(4), num_envs=1, out=tmp_path / "out")
    finally:
        sys.path.remove(str(pkg))
        sys.modules.pop("driver_only_env", None)
    message = str(err.value)
    assert "\n" not in message
    assert "No module named 'driver_only_env'" in message and "on node" in message and "every node" in message
    assert not (tmp_path / "out" / ".rlcapture-ray").exists()
    assert not (tmp_path / "out" / "episodes.jsonl").exists()  # nothing blocks the rerun


def test_a_task_error_reaches_the_driver_as_its_class(cluster, tmp_path):
    """rlcapture's own errors from a task are raised as themselves; an env's, with its traceback."""
    with pytest.raises(EnvError, match=r"task of seeds \d: EnvError: no display here$") as err:
        evaluate_on_ray(Failing("make"), seeds=range(2), num_envs=1, out=tmp_path / "make")
    assert "\n" not in str(err.value)
    with pytest.raises(rlcapture.ProcessDiedError, match=r"task of seeds \d: WorkerError: env 0 raised RuntimeError") as err:
        evaluate_on_ray(Failing("step"), seeds=range(2), num_envs=1, out=tmp_path / "step")
    assert not isinstance(err.value, rlcapture.WorkerError)  # the actor's, not this process's
    assert "Traceback" in str(err.value) and "boom on the actor" in str(err.value)


def test_bad_options_fail_before_any_actor(cluster, tmp_path):
    with pytest.raises(ConfigError, match="appears twice"):
        evaluate_on_ray("CartPole-v1", seeds=[1, 1], out=tmp_path / "a")
    with pytest.raises(ConfigError, match="storage"):
        evaluate_on_ray("CartPole-v1", seeds=[1], out=tmp_path / "b", storage="nfs")
    with pytest.raises(ConfigError, match="CPUs"):
        evaluate_on_ray("CartPole-v1", seeds=[1], out=tmp_path / "c", num_cpus=64)
    with pytest.raises(ConfigError, match="mosaic"):
        evaluate_on_ray("CartPole-v1", seeds=[1], out=tmp_path / "d", mosaic=True)


def _local_error(out, **options: Any) -> str:
    """The message a local evaluate refuses ``options`` with (into ``out``, left unmade)."""
    with pytest.raises(ConfigError) as err:
        rlcapture.evaluate("CartPole-v1", seeds=range(2), num_envs=1, out=out, **options)
    assert not out.exists()
    return str(err.value)


def _no_actor_started(out) -> None:
    assert not [a for a in ray.util.list_named_actors() if a.startswith("rlcapture-")]
    assert not out.exists()


@pytest.mark.parametrize(
    "options",
    [{"bogus_option": 1}, {"codc": "h264"}, {"envs_per_worker": 0}, {"episode_seeds": [1, 2]}],
    ids=["unknown", "near-miss", "bad-vector-option", "set-by-evaluate"],
)
def test_an_option_a_local_run_refuses_is_refused_on_the_driver_alike(cluster, tmp_path, options):
    """Refused before any actor starts, with the local message (not an actor's task error)."""
    out = tmp_path / "ray"
    with pytest.raises(ConfigError) as err:
        evaluate_on_ray(SlowCartPole(), seeds=range(4), num_envs=1, out=out, **options)
    local = _local_error(tmp_path / "local", **options)
    assert str(err.value) == local
    assert "actor" not in str(err.value) and "task of seeds" not in str(err.value)
    _no_actor_started(out)
    with pytest.raises(ConfigError) as err:
        RayEvaluation("CartPole-v1", seeds=range(4), out=out, **options)  # refused when made, not run
    assert str(err.value) == local


def test_cli_refuses_an_unknown_option_with_ray_as_without(cluster, tmp_path, subprocess_env):
    """From the command line an unknown option stops at the parser: the same with --ray, no actor."""
    out = tmp_path / "cli"
    base = [sys.executable, "-m", "rlcapture.cli", "record", "CartPole-v1", "--episodes", "2", "--out", str(out),
            "--bogus-option", "1"]
    runs = [
        subprocess.run(argv, env=subprocess_env, capture_output=True, text=True, timeout=120)
        for argv in (base, [*base, "--ray", cluster.address])
    ]
    assert [p.returncode for p in runs] == [2, 2]
    errors = [p.stderr.strip().splitlines()[-1] for p in runs]
    assert "unrecognized arguments: --bogus-option 1" in errors[0]
    assert errors[1] == errors[0]
    _no_actor_started(out)


def test_cli_joins_a_cluster_by_address(cluster, tmp_path, subprocess_env):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "rlcapture.cli", "record", "CartPole-v1", "--episodes", "6", "--seed", "7",
         "--max-episode-steps", str(STEPS), "--num-envs", "1", "--out", str(out), "--ray", cluster.address],
        env=subprocess_env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "recorded 6 episodes" in proc.stdout
    assert "ray      3 nodes" in proc.stdout and "storage  shared" in proc.stdout
    lines = read_manifest(out)
    local = rlcapture.evaluate("CartPole-v1", seeds=range(7, 13), num_envs=2, out=tmp_path / "local",
                               max_episode_steps=STEPS)
    assert triples(lines) == sorted((e.seed, e.ret, e.length) for e in local.episodes)
    # run.json and the manifest say enough to re-render any episode on this machine.
    replay = subprocess.run(
        [sys.executable, "-m", "rlcapture.cli", "replay", str(out), "--env", "0", "--episode", "3"],
        env=subprocess_env, capture_output=True, text=True, timeout=120,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]


def _record_on(cluster, out, subprocess_env, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "rlcapture.cli", "record", "CartPole-v1", "--episodes", "6",
            "--max-episode-steps", str(STEPS), "--out", str(out), "--ray", cluster.address, *extra]  # fmt: skip
    return subprocess.run(argv, env=subprocess_env, capture_output=True, text=True, timeout=240)


def test_cli_without_num_envs_fits_the_nodes_and_refuses_an_actor_no_node_holds(cluster, tmp_path, subprocess_env):
    # Three 1-CPU nodes: each actor gets one env (not the driver's default of 2, which no node holds).
    proc = _record_on(cluster, tmp_path / "ones", subprocess_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "recorded 6 episodes over 1 envs" in proc.stdout and "3 nodes, 3 actors" in proc.stdout
    assert len(read_manifest(tmp_path / "ones")) == 6
    node = cluster.add_node(num_cpus=2)
    try:
        cluster.wait_for_nodes()
        proc = _record_on(cluster, tmp_path / "mixed", subprocess_env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "4 nodes, 5 actors" in proc.stdout  # 1 + 1 + 1 + 2 one-env actors
        proc = _record_on(cluster, tmp_path / "twos", subprocess_env, "--num-envs", "2")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "over 2 envs" in proc.stdout and " 1 nodes, 1 actors" in proc.stdout  # the 2-CPU node
        # Larger than every node: one line naming the largest, at once (no wait for a node).
        proc = _record_on(cluster, tmp_path / "threes", subprocess_env, "--num-envs", "3")
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        assert "--num-envs 3 needs 3 CPUs per actor" in line and "has 2" in line
        assert not (tmp_path / "threes" / "episodes.jsonl").exists()
    finally:
        cluster.remove_node(node)
        cluster.wait_for_nodes()


def test_a_node_removed_mid_run_loses_nothing(cluster, tmp_path):
    seeds = range(300, 312)
    out = tmp_path / "ray"
    run = RayEvaluation(SlowCartPole(0.02), seeds=seeds, num_envs=1, out=out, storage="stream", scratch=str(tmp_path))
    workers = {n.node_id: n for n in cluster.worker_nodes}
    removed = []

    def progress(done: int, steps: int) -> None:
        if done == 2 and not removed:
            victim = next(a for a in run.actors.values() if a.state is ActorState.BUSY and a.info.node in workers)
            removed.append(victim)
            cluster.remove_node(workers[victim.info.node])

    run.progress = progress
    result = run.run()  # last in the module: the cluster keeps two nodes until its teardown
    print(result.events, result.elapsed)
    assert removed
    assert triples(result.episodes) == local_episodes(seeds, tmp_path)
    check_folder(out, result, seeds)
    node = removed[0].info.node[:12]
    assert any(node in e and "died" in e for e in result.events), result.events
