"""The cluster's bookkeeping without Ray: seeds into tasks, re-queues, chunked copies, the storage token."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import rlcapture
from rlcapture import ConfigError, RecordConfig
from rlcapture.cluster import evaluate_on_ray
from rlcapture.cluster.options import task_options
from rlcapture.cluster.plan import (
    ActorSizes,
    TaskPlan,
    check_cluster_seeds,
    default_task_size,
    size_actors,
)
from rlcapture.cluster.storage import check_storage, scratch_root, sees_token, write_token
from rlcapture.cluster.transfer import FileCopy, Transfers


def test_seeds_are_checked():
    assert check_cluster_seeds(range(3, 6)) == [3, 4, 5]
    with pytest.raises(ConfigError, match="seed 4 appears twice"):
        check_cluster_seeds([3, 4, 4])
    with pytest.raises(ConfigError, match="empty"):
        check_cluster_seeds([])
    with pytest.raises(ConfigError, match="integers"):
        check_cluster_seeds([1, -2])
    with pytest.raises(ConfigError, match="list or range"):
        check_cluster_seeds("012")


def test_tasks_cover_every_seed_once():
    plan = TaskPlan(range(100, 111), 4)
    assert [t.seeds for t in plan.queue] == [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109, 110]]
    assert default_task_size(11, 2, 1) == 3 and default_task_size(3, 8, 4) == 4


def test_a_dead_actors_unsettled_seeds_go_first_with_the_next_attempt():
    plan = TaskPlan(range(8), 4)
    a = plan.take(actor=0)
    b = plan.take(actor=1)
    assert a is not None and b is not None
    assert plan.settle(0) and plan.settle(1)
    assert not plan.settle(1)  # a duplicate is refused
    again = plan.requeue(a.id)
    assert again is not None and again.seeds == [2, 3] and again.attempt == 1
    assert plan.queue[0] is again
    assert plan.take(actor=2) is again
    for s in (2, 3, 4, 5, 6, 7):
        plan.settle(s)
    assert plan.finish(again.id) == [] and plan.finish(b.id) == []
    assert plan.done and plan.take(actor=0) is None


def test_a_queued_task_drops_seeds_settled_meanwhile():
    plan = TaskPlan(range(4), 2)
    first = plan.take(actor=0)
    assert first is not None
    plan.retry([0, 1, 2], attempt=1)  # e.g. files lost with an actor
    plan.settle(2)
    task = plan.take(actor=1)
    assert task is not None and task.seeds == [0, 1]


def test_chunked_copy_is_whole_and_bounded(tmp_path):
    data = os.urandom(100_003)
    src = tmp_path / "src.mp4"
    src.write_bytes(data)
    transfers = Transfers(chunk=4096, window=3)
    copies = [FileCopy(i, 0, str(src), str(tmp_path / "out" / f"v{i}.mp4"), len(data)) for i in range(2)]
    for c in copies:
        transfers.add(c)
    done = 0
    while transfers.queue or transfers.in_flight:
        batch = list(transfers.requests())
        assert transfers.in_flight <= 3
        for copy, offset, length in batch:
            assert not os.path.exists(copy.local)  # never a partial file under the final name
            with open(copy.remote, "rb") as f:
                done += transfers.received(copy, offset, os.pread(f.fileno(), length, offset), length)
    assert done == 2 and transfers.files == 2 and transfers.bytes == 2 * len(data)
    assert transfers.chunks == 2 * -(-len(data) // 4096)
    for c in copies:
        assert Path(c.local).read_bytes() == data and not os.path.exists(c.part)


def test_copies_from_a_dead_actor_leave_no_part_file(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x" * 10_000)
    transfers = Transfers(chunk=1000, window=2)
    copy = FileCopy(0, 7, str(src), str(tmp_path / "v.mp4"), 10_000)
    transfers.add(copy)
    list(transfers.requests())
    for _ in range(2):
        transfers.failed()
    lost = transfers.drop(7)
    assert lost == [copy] and not os.path.exists(copy.part) and transfers.in_flight == 0


def test_storage_token(tmp_path):
    token = write_token(tmp_path / "staging")
    assert sees_token(str(tmp_path / "staging"), token)
    assert not sees_token(str(tmp_path / "staging"), "another run's token")
    assert not sees_token(str(tmp_path / "elsewhere"), token)
    assert check_storage("stream") == "stream"
    with pytest.raises(ConfigError, match="auto, shared, stream"):
        check_storage("nfs")
    assert scratch_root(str(tmp_path), "ab12") == str(tmp_path / "rlcapture-ray-ab12")


def test_task_options_pass_evaluates_own_on_and_fold_config_options_in(tmp_path):
    config, passed = task_options(
        RecordConfig(fps=15), 2,
        {"codec": "h264", "env_kwargs": {"g": 9.8}, "max_episode_steps": 40, "record": "every:2",
         "envs_per_worker": 2, "step_timeout": 5.0, "on_error": "continue", "run_info": {"x": 1}},
    )  # fmt: skip
    assert (config.video.fps, config.video.codec) == (15, "h264")
    assert passed == {"env_kwargs": {"g": 9.8}, "max_episode_steps": 40, "run_info": {"x": 1}, "record": "every:2",
                      "envs_per_worker": 2, "step_timeout": 5.0, "on_error": "continue"}  # fmt: skip


@pytest.mark.parametrize("options", [{"bogus_option": 1}, {"fsp": 30}, {"on_error": "ignore"}, {"config": "h264"}])
def test_an_option_is_refused_on_the_driver_as_a_local_evaluate_refuses_it(tmp_path, options):
    """Before Ray is joined (none is here), with the local message."""
    with pytest.raises(ConfigError) as local:
        rlcapture.evaluate("CartPole-v1", seeds=range(2), num_envs=1, out=tmp_path / "local", **options)
    with pytest.raises(ConfigError) as ray:
        evaluate_on_ray("CartPole-v1", seeds=range(2), num_envs=1, out=tmp_path / "ray", **options)
    assert str(ray.value) == str(local.value)
    assert not (tmp_path / "local").exists() and not (tmp_path / "ray").exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_actors_are_sized_to_the_nodes_not_the_driver():
    one_cpu = [("10.0.0.1", 1.0), ("10.0.0.1", 1.0), ("10.0.0.3", 1.0)]  # two nodes may share an address
    # Without num_envs: as many envs as the smallest node has CPUs; as many actors as the nodes hold.
    assert size_actors(one_cpu, None, None, None, 12) == ActorSizes(1, 1.0, 3)
    mixed = [*one_cpu, ("10.0.0.4", 2.0)]
    assert size_actors(mixed, None, None, None, 12) == ActorSizes(1, 1.0, 5)
    eight = [(f"10.0.1.{i}", 8.0) for i in range(4)]
    assert size_actors(eight, None, None, None, 1000) == ActorSizes(8, 8.0, 4)
    # Never more envs than episodes, nor more actors than the episodes need.
    assert size_actors(eight, None, None, None, 3) == ActorSizes(3, 3.0, 1)
    assert size_actors(mixed, 2, None, None, 12) == ActorSizes(2, 2.0, 1)  # only the 2-CPU node fits one
    assert size_actors(mixed, 1, None, 2, 12).actors == 2  # asked for
    assert size_actors([*mixed, ("dead", 0.0)], 1, 0.5, None, 100).actors == 10


@pytest.mark.parametrize(
    ("num_envs", "num_cpus", "says"),
    [(3, None, "--num-envs 3 needs 3 CPUs"), (1, 4.0, "num_cpus 4 needs 4 CPUs")],
)
def test_an_actor_larger_than_every_node_is_refused_naming_the_largest(num_envs, num_cpus, says):
    nodes = [("10.0.0.1", 1.0), ("10.0.0.4", 2.0)]
    with pytest.raises(ConfigError) as err:
        size_actors(nodes, num_envs, num_cpus, None, 12)
    message = str(err.value)
    assert says in message and "largest node of the cluster (10.0.0.4) has 2" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match="no alive node with a CPU"):
        size_actors([("10.0.0.9", 0.0)], None, None, None, 12)
