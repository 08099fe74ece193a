"""Several encoder processes (``Recorder(encoders=k)``): env i is encoded by shard i % k.

Every shard writes into the same folder and manifest; what the caller sees
(one video per episode, one manifest line per episode, errors naming who
failed, no hang, nothing leaked) is the same as with one encoder.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LOSSLESS, PYTHON, by_env, decode, pid_gone, read_manifest, wait_until

import rlcapture
from rlcapture import BatchCapture, CaptureWrapper, Recorder
from rlcapture._backend.manifest import ManifestWriter
from rlcapture._backend.producer import FrameProducer, ShardedProducer, open_producer
from rlcapture.cli import main

pytestmark = pytest.mark.timeout(90)

ENDED = ("terminated", "truncated")


def check_recording(out: Path) -> list[dict]:
    """Whole manifest lines only, one per video, every video decodes to its frame count."""
    raw = (out / "episodes.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    records = [json.loads(line) for line in raw.decode().splitlines()]  # no torn line
    videos = [r["video"] for r in records if r["video"]]
    assert len(videos) == len(set(videos))
    assert {f"videos/{p.name}" for p in (out / "videos").iterdir()} == set(videos)
    for r in records:
        if r["video"]:
            assert decode(out / r["video"]).count == r["frames"], r
    return records


# -- a vector env over two encoders -------------------------------------------------------
@pytest.mark.parametrize("per_worker", [1, 2])
def test_two_encoders_record_every_episode_once(tmp_path: Path, per_worker: int) -> None:
    out = tmp_path / "out"
    env = rlcapture.make_vec(
        "CartPole-v1", 4, out, encoders=2, envs_per_worker=per_worker, max_episode_steps=15
    )
    try:
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        for _ in range(60):
            _, _, terminated, truncated, _ = env.step(rng.integers(0, 2, 4))
        shards = env.recorder._shards
    finally:
        env.close()
    records = check_recording(out)
    summary = env.recorder.summary
    assert summary["episodes"] == len(records) == summary["videos"]
    assert summary["frames"] == sum(r["frames"] for r in records)
    # Both encoders worked: env i went to shard i % 2.
    assert all(s.summary and s.summary["frames"] > 0 for s in shards)
    assert sum(s.summary["frames"] for s in shards) == summary["frames"]
    for i, rs in by_env(records).items():
        assert [r["episode"] for r in rs] == list(range(len(rs)))  # numbered per env, no gap
        assert sum(r["end"] in ENDED for r in rs) >= 3
        for r in rs:
            assert r["video"] == f"videos/env{i}-episode{r['episode']}.mp4"
            if r["end"] in ENDED:
                assert r["frames"] == r["length"] + 1
    # An env whose episode ended on the last step has its reset still pending
    # (next-step autoreset): no episode of it was running to close.
    running = [i for i in range(4) if not (terminated[i] or truncated[i])]
    assert sorted(r["env"] for r in records if r["end"] == "closed") == running


def test_endpoints_route_envs_to_shards(tmp_path: Path) -> None:
    with Recorder(tmp_path / "out", encoders=3) as rec:
        assert len(set(rec.encoder_pids)) == 3 and rec.encoder_pid == rec.encoder_pids[0]
        addresses = [rec.endpoint_for(i).address for i in range(6)]
        assert addresses[:3] == addresses[3:] and len(set(addresses)) == 3
        assert rec.endpoint_for(0).address == rec.endpoint.address
        assert rec.endpoint.for_env(4) == rec.endpoint_for(4)
        with pytest.raises(rlcapture.ConfigError, match="env_index"):
            rec.endpoint_for(-1)
        single = open_producer(rec.endpoint, [4, 7])  # both in shard 1
        many = open_producer(rec.endpoint, [0, 1, 2])
        try:
            assert isinstance(single, FrameProducer)
            assert isinstance(many, ShardedProducer) and len(many.producers) == 3
        finally:
            single.close()
            many.close()
    with Recorder(tmp_path / "one") as rec:
        assert rec.endpoint.shards == () and rec.endpoint_for(5) == rec.endpoint


def test_wrapper_and_batch_with_two_encoders(tmp_path: Path) -> None:
    """BatchCapture splits its envs over the shards; a wrapper goes to its env's shard."""
    n, h, w = 4, 16, 20
    rng = np.random.default_rng(1)
    sent: dict[int, list[np.ndarray]] = {}
    with Recorder(tmp_path, encoders=2, **LOSSLESS) as rec:
        with BatchCapture(rec, n) as cap:
            frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
            cap.reset(frames)
            for i in range(n):
                sent[i] = [frames[i].copy()]
            for step in range(1, 6):
                frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
                done = np.full(n, step == 5)
                cap.step(frames, np.ones(n), done, np.zeros(n, bool))
                for i in range(n):
                    sent[i].append(frames[i].copy())
        import gymnasium as gym

        wrapped = CaptureWrapper(gym.make("CartPole-v1", render_mode="rgb_array"), rec, 5)
        assert wrapped._endpoint.address == rec.endpoint_for(5).address != rec.endpoint.address
        wrapped.reset(seed=0)
        for _ in range(3):
            wrapped.step(0)
        wrapped.close()
    records = check_recording(tmp_path)
    assert sorted(r["env"] for r in records) == [0, 1, 2, 3, 5]
    for r in records:
        if r["env"] < n:
            got = decode(tmp_path / r["video"], keep=True)
            assert all(np.array_equal(a, b) for a, b in zip(got.frames, sent[r["env"]]))
            assert got.count == 6
        else:
            assert r["end"] == "closed" and r["frames"] == 4
    assert rec.summary == {"frames": 4 * 6 + 4, "episodes": 5, "videos": 5}


# -- failures ---------------------------------------------------------------------------
def test_one_encoder_killed_mid_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = rlcapture.make_vec("CartPole-v1", 4, out, encoders=2, max_episode_steps=20)
    try:
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.zeros(4, int))
        pid = env.recorder.encoder_pids[1]
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        err = None
        for _ in range(200):
            try:
                env.step(np.zeros(4, int))
            except rlcapture.RLCaptureError as exc:
                err = exc
                break
        assert time.monotonic() - t0 < 10
        assert type(err) is rlcapture.EncoderError, repr(err)
        assert err.shard == 1 and err.exitcode == -signal.SIGKILL
        assert f"encoder 1 of 2 (pid {pid}" in str(err) and "SIGKILL" in str(err)
    finally:
        t0 = time.monotonic()
        env.close()
        assert time.monotonic() - t0 < 30
    # Shard 0 (envs 0 and 2) finished its videos properly; shard 1's died
    # with it, and what reached the disk decodes.
    records = read_manifest(out)
    assert {r["env"] for r in records} == {0, 2}
    # an episode running at close ends "closed"; one that had just ended
    # (next-step autoreset, not yet reset) has no running episode to close
    assert {r["end"] for r in records} <= {"terminated", "truncated", "closed"}
    for r in records:
        assert decode(out / r["video"]).count == r["frames"]
    for path in (out / "videos").glob("env[13]-*.mp4"):
        decode(path, tolerant=True)


def test_check_and_close_name_the_dead_encoder(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "out", encoders=2, **LOSSLESS)
    try:
        producer = open_producer(rec.endpoint, [0, 1])
        for env in (0, 1):
            producer.frame(env, 0, 0, np.zeros((8, 8, 3), np.uint8))
            producer.end({"env": env, "episode": 0, "end": "terminated"})
        producer.close()
        pid = rec.encoder_pids[0]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(rlcapture.EncoderError) as info:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                rec.check()
                time.sleep(0.02)
        assert info.value.shard == 0 and info.value.exitcode == -signal.SIGKILL
        assert f"encoder 0 of 2 (pid {pid}" in str(info.value)
        rec.check()  # reported once; the other encoder still runs
        summary = rec.close()  # the live encoder closes properly
        assert summary == {"frames": 1, "episodes": 1, "videos": 1}
    finally:
        rec.close()
    assert [r["env"] for r in read_manifest(tmp_path / "out")] == [1]


def test_close_reports_an_encoder_that_died_unnoticed(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "out", encoders=3)
    pid = rec.encoder_pids[2]
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(
        rlcapture.EncoderError, match=r"encoder 2 of 3 .* failed while closing"
    ) as info:
        rec.close()
    assert "SIGKILL" in str(info.value)
    assert info.value.shard == 2 and time.monotonic() - t0 < 15
    assert rec.summary == {"frames": 0, "episodes": 0, "videos": 0}  # the two that closed
    assert rec.close() == rec.summary


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import rlcapture

    env = rlcapture.make_vec("CartPole-v1", 4, sys.argv[1], encoders=2, max_episode_steps=30)
    env.reset(seed=0)
    for i in range(100000):
        env.step(np.zeros(4, int))
        if i == 60:
            print(json.dumps(env.worker_pids + env.recorder.encoder_pids), flush=True)
    """
)


@pytest.mark.timeout(120)
def test_main_process_killed_with_two_encoders(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """Each encoder sees the recorder's death (no encoder holds another's control pipe)."""
    script = tmp_path / "record_forever.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [PYTHON, str(script), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=subprocess_env, text=True,
    )  # fmt: skip
    children: list[int] = []
    try:
        line = proc.stdout.readline()
        assert line, f"the script failed: {proc.stderr.read()}"
        children = json.loads(line)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert wait_until(lambda: all(pid_gone(p) for p in children), 20.0), [
            p for p in children if not pid_gone(p)
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in children:
            if not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()
    # Both encoders closed every video they had open and gave it a line (the
    # episodes cut short end as "error", from the workers on their way down).
    records = check_recording(out)
    assert {r["env"] for r in records} == {0, 1, 2, 3}
    for rs in by_env(records).values():
        assert [r["episode"] for r in rs] == list(range(len(rs)))


# -- options ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, "x", 1.5, True, None, 65, "2"])
def test_bad_encoders_values(tmp_path: Path, value: object) -> None:
    with pytest.raises(rlcapture.ConfigError, match=r"encoders must be 'auto' or an integer from 1 to 64"):
        Recorder(tmp_path / "out", encoders=value)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()  # refused before anything was made
    with pytest.raises(rlcapture.ConfigError, match="encoders"):
        rlcapture.make_vec("CartPole-v1", 2, tmp_path / "vec", encoders=value)


def test_cli_encoders(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["record", "CartPole-v1", "--encoders", "0", "-o", str(tmp_path / "bad")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--encoders must be from 1 to 64" in err
    out = tmp_path / "rec"
    code = main(
        ["record", "CartPole-v1", "-n", "3", "-k", "3", "--encoders", "2", "--max-episode-steps", "10",
         "-o", str(out), "-q"]
    )  # fmt: skip
    assert code == 0
    records = check_recording(out)
    assert sum(r["end"] in ENDED for r in records) == 3


# -- the shared manifest ----------------------------------------------------------------
def _append_lines(path: str, writer: int, count: int) -> None:
    m = ManifestWriter(path)
    try:
        for i in range(count):
            m.write({"env": writer, "episode": i, "padding": "x" * (97 * (i % 50))})
    finally:
        m.close()


def test_manifest_with_several_writers(tmp_path: Path) -> None:
    path = str(tmp_path / "episodes.jsonl")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_lines, args=(path, w, 300)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    records = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert len(records) == 900
    for w in range(3):
        assert [r["episode"] for r in records if r["env"] == w] == list(range(300))


# -- rlcapture bench --encoders -----------------------------------------------------------
def test_bench_variants_per_encoder_count() -> None:
    from rlcapture.bench.variants import (
        select_variants,
        variant_base,
        variant_encoders,
        variant_label,
    )

    assert select_variants("none,all,every", 20, [1, 2]) == [
        "none", "all/e1", "all/e2", "every:20/e1", "every:20/e2",
    ]  # fmt: skip
    assert select_variants("all", 20, [2]) == ["all/e2"]
    assert select_variants("all", 20, ["auto", 2]) == ["all", "all/e2"]
    assert select_variants(None, 20) == select_variants(None, 20, ["auto"])
    assert variant_base("every:20/e2") == "every" and variant_encoders("every:20/e2") == 2
    assert variant_encoders("all") == "auto" and variant_label("all/e2") == "rlcapture every frame, 2 enc"


def test_bench_compares_encoder_counts(tmp_path: Path, capsys) -> None:
    out = tmp_path / "res.json"
    code = main(
        ["bench", "CartPole-v1", "-n", "2", "--frames", "60", "--repeats", "1",
         "--variants", "none,render,all", "--encoders", "1", "2", "--json", str(out), "-q"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert "--encoders 1 2" in result["command"] and result["settings"]["encoders"] == [1, 2]
    rows = {r["variant"]: r for r in result["results"]}
    assert set(rows) == {"none", "render", "all/e1", "all/e2"}
    for v, k in (("all/e1", 1), ("all/e2", 2)):
        assert rows[v]["encoders"] == k == rows[v]["encoders_started"]
        assert rows[v]["frames"] == 62  # 2 envs x (reset + 30 steps)
        assert rows[v]["encode_ms"] > 0 and rows[v]["ceiling_pct"] is not None
    assert "rlcapture every frame, 2 enc" in capsys.readouterr().out


def test_what_needs_one_encoder_says_so(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.ConfigError, match="mosaic needs every env's frames in one encoder"):
        rlcapture.Recorder(tmp_path / "a", encoders=2, mosaic=4)
    with pytest.raises(rlcapture.ConfigError, match="'worst 3 by return' ranks episodes across the run"):
        rlcapture.Recorder(tmp_path / "b", encoders=2, keep="worst:3")
    rlcapture.Recorder(tmp_path / "c", encoders=2, keep="failures,sample:0.5", keyframes=True).close()
