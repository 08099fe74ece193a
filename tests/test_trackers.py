"""Trackers for real: W&B offline, TensorBoard event files, MLflow file store; and ones that are down.

Each test records a few short CartPole episodes with ``loggers`` set, then
reads back what landed with the tracker's own reader (W&B's offline run file,
TensorBoard's EventAccumulator, MlflowClient) and compares it with the
manifest. Network traffic goes only to 127.0.0.1: to ports where nothing
listens, or to local servers that never answer or answer one byte a second
(``slow_servers.py``).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import decode
from slow_servers import SlowServer, answer_seconds

from rlcapture import CaptureVectorEnv, ConfigError, RecordConfig, Recorder
from rlcapture._backend.manifest import read_manifest
from rlcapture._backend.uploads import TrackerSpec, parse_tracker, upload_parts
from rlcapture.cli import main
from rlcapture.envs import make_env_fn

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")

FAST = {"upload_attempts": 1, "upload_timeout": 30.0}


def record(
    out: Path, loggers: list[str], episodes: tuple[int, ...] = (2, 1), **options: Any
) -> CaptureVectorEnv:
    """Record short CartPole episodes into ``out`` with ``loggers``; returns the closed env."""
    fn = make_env_fn("CartPole-v1", max_episode_steps=15)
    envs = CaptureVectorEnv(
        [fn] * len(episodes),
        out,
        loggers=loggers,
        episodes_per_env=list(episodes),
        **{**FAST, **options},
    )
    try:
        envs.reset(seed=0)
        for _ in range(15 * max(episodes) + 5):
            envs.step(envs.action_space.sample())
    finally:
        envs.close()
    return envs


def closed_port() -> int:
    """A local port where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def steps_in_order(lines: list[dict[str, Any]]) -> dict[tuple[int, int], int]:
    """Each episode's step: the env steps of the manifest's episodes up to it."""
    total, out = 0, {}
    for line in lines:
        if line.get("update"):
            continue
        total += int(line["length"])
        out[(line["env"], line["episode"])] = total
    return out


# -- specs ---------------------------------------------------------------------------------------
def test_specs() -> None:
    assert parse_tracker("wandb") == TrackerSpec("wandb", "")
    assert parse_tracker("wandb:team/proj") == TrackerSpec("wandb", "team/proj")
    assert parse_tracker("mlflow:file:///data/mlruns") == TrackerSpec(
        "mlflow", "file:///data/mlruns"
    )
    assert parse_tracker("tensorboard:runs/my tb") == TrackerSpec("tensorboard", "runs/my tb")
    assert str(parse_tracker("mlflow:http://h:5000")) == "mlflow:http://h:5000"
    assert RecordConfig(loggers=["wandb", "tensorboard"]).loggers == ("wandb", "tensorboard")
    for bad, message in [
        (["wandbb"], r"unknown tracker 'wandbb'.*did you mean 'wandb'"),
        (["neptune"], "use wandb\\[:PROJECT\\], tensorboard\\[:DIR\\] or mlflow"),
        (["wandb:"], "nothing after ':'"),
        (["wandb:a b"], "spaces or control characters"),
        (["wandb:a/b/c"], "'project' or 'entity/project'"),
        (["tensorboard", "tensorboard"], "named twice"),
        ("wandb", "loggers must be a list of tracker specs"),
    ]:
        with pytest.raises(ConfigError, match=message):
            RecordConfig(loggers=bad)
    with pytest.raises(ConfigError, match="upload_attempts must be an integer from 1 to 100"):
        RecordConfig(upload_attempts=0)
    with pytest.raises(ConfigError, match="upload_timeout must be seconds"):
        RecordConfig(upload_timeout=float("inf"))


def test_what_is_sent() -> None:
    finished = {"env": 0, "episode": 1, "end": "terminated", "video": "videos/a.mp4"}
    assert upload_parts(finished) == ["stats", "video"]
    assert upload_parts({**finished, "end": "closed"}) == ["video"]  # cut short: no return to plot
    assert upload_parts({**finished, "video": None, "kept": False}) == ["stats"]
    assert upload_parts({"env": 0, "episode": 1, "update": True, "kept": False}) == []


def test_missing_package_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what Python does for a missing module
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        Recorder(out, loggers=["mlflow"])
    assert (
        str(info.value) == '--log mlflow needs the mlflow package: pip install "rlcapture[mlflow]"'
    )
    assert not out.exists()  # before any folder or process


# -- the step axis ------------------------------------------------------------------------------
@pytest.mark.parametrize("encoders", [1, 2])
def test_manifest_step_counts_env_steps_in_its_order(tmp_path: Path, encoders: int) -> None:
    """Each line's ``step`` is the env steps of the lines up to it, also across encoder shards."""
    fn = make_env_fn("CartPole-v1", max_episode_steps=15)
    envs = CaptureVectorEnv([fn] * 4, tmp_path / "out", encoders=encoders, episodes_per_env=[2] * 4)
    try:
        envs.reset(seed=0)
        for _ in range(40):
            envs.step(envs.action_space.sample())
    finally:
        envs.close()
    raw = read_manifest(tmp_path / "out" / "episodes.jsonl", raw=True)
    assert len(raw) == 8
    assert [r["step"] for r in raw] == list(steps_in_order(raw).values())


def test_manifest_step_survives_update_lines_and_other_writers(tmp_path: Path) -> None:
    from rlcapture._backend.manifest import ManifestWriter

    path = tmp_path / "episodes.jsonl"
    a, b = ManifestWriter(str(path)), ManifestWriter(str(path))
    a.write({"env": 0, "episode": 0, "length": 5})
    a.write({"env": 0, "episode": 0, "kept": False}, update=True)
    b.write({"env": 1, "episode": 0, "length": 7})  # reads a's step back past the update line
    b.write({"env": 1, "episode": 0, "kept": False}, update=True)
    a.write({"env": 0, "episode": 1, "length": 1, "end": "closed"})
    a.write({"env": 0, "episode": 2, "end": "error"})  # no length: no steps
    a.close()
    b.close()
    raw = read_manifest(path, raw=True)
    assert [r.get("step") for r in raw] == [5, None, 12, None, 13, None]  # no length: no step


# -- local trackers, read back ---------------------------------------------------------------------
def test_tensorboard_and_mlflow_get_every_episode_and_video(tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it
    out, tb, store = tmp_path / "out", tmp_path / "tb", tmp_path / "mlruns"
    envs = record(out, [f"tensorboard:{tb}", f"mlflow:{store.as_uri()}"])
    summary = envs.recorder.summary
    assert summary["not_uploaded"] == []
    lines = read_manifest(out / "episodes.jsonl")
    assert len(lines) == 3 and all("not_uploaded" not in r for r in lines)
    steps = steps_in_order(lines)
    assert [r["step"] for r in lines] == list(steps.values())
    assert summary["uploads"][f"tensorboard:{tb}"] == {"sent": 6, "not_sent": 0, "error": None}

    acc = EventAccumulator(str(tb), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    got = {(int(e.step), e.value) for e in acc.Scalars("rlcapture/return")}
    assert got == {(steps[(r["env"], r["episode"])], float(r["return"])) for r in lines}
    captions = {t.tensor_proto.string_val[0].decode() for t in acc.Tensors("rlcapture/episode")}
    assert {c.split(":")[0] for c in captions} == {
        f"env {r['env']} episode {r['episode']} seed {r['seed']}" for r in lines
    }
    images = acc.Images("rlcapture/video")
    assert len(images) == 3
    for image in images:
        gif = Image.open(io.BytesIO(image.encoded_image_string))
        assert gif.format == "GIF" and gif.n_frames > 1 and gif.size == (image.width, image.height)
        assert image.width <= 160
    texts = [t.tensor_proto.string_val[0].decode() for t in acc.Tensors("rlcapture/video_path")]
    assert sorted(t.split("\n")[0] for t in texts) == sorted(str(out / r["video"]) for r in lines)

    client = MlflowClient(store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("rlcapture").experiment_id])
    assert run.info.run_name == "out" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "rlcapture/return")
    assert {(m.step, m.value) for m in history} == got
    lengths = client.get_metric_history(run.info.run_id, "rlcapture/length")
    assert sorted(m.value for m in lengths) == sorted(float(r["length"]) for r in lines)
    artifacts = client.list_artifacts(run.info.run_id, "videos")
    assert sorted(a.path for a in artifacts) == sorted(
        f"videos/{Path(r['video']).name}" for r in lines
    )
    for a in artifacts:  # the MP4 itself, byte for byte
        local = client.download_artifacts(run.info.run_id, a.path, str(tmp_path / "dl"))
        assert Path(local).read_bytes() == (out / "videos" / Path(a.path).name).read_bytes()


def _wandb_records(path: Path) -> list[Any]:
    """The records of a W&B run file (LevelDB log format: 32 KiB blocks of typed chunks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf, chunks = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block  # a block's tail too short for a header
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            chunks.append(buf + chunk)
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def test_wandb_offline_run_holds_the_stats_and_the_mp4s(tmp_path: Path, monkeypatch) -> None:
    import json

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    (tmp_path / "wb").mkdir()
    out = tmp_path / "out"
    envs = record(out, ["wandb:rlcapture-test"])
    assert envs.recorder.summary["not_uploaded"] == []
    lines = read_manifest(out / "episodes.jsonl")
    steps = steps_in_order(lines)
    (run_dir,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    history = []
    for rec in _wandb_records(next(run_dir.glob("*.wandb"))):
        if rec.WhichOneof("record_type") == "history":
            history.append(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in rec.history.item
                }
            )
    stats = [h for h in history if "rlcapture/return" in h]
    assert sorted(
        # an unseeded episode (an autoreset) has no seed to log
        (h["rlcapture/step"], h["rlcapture/return"], h.get("rlcapture/seed"), h["rlcapture/end"])
        for h in stats
    ) == sorted((steps[(r["env"], r["episode"])], r["return"], r["seed"], r["end"]) for r in lines)
    videos = [h for h in history if "rlcapture/video/path" in h]
    assert len(videos) == 3
    ours = sorted((out / r["video"]).read_bytes() for r in lines)
    theirs = sorted((run_dir / "files" / v["rlcapture/video/path"]).read_bytes() for v in videos)
    assert theirs == ours  # the MP4 itself, not re-encoded


# -- trackers that are down or gone ----------------------------------------------------------------
def test_unreachable_trackers_never_stop_the_recording(tmp_path: Path, monkeypatch) -> None:
    port = closed_port()
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "out"
    specs = [f"mlflow:http://127.0.0.1:{port}", "wandb:down", f"tensorboard:{tmp_path / 'tb'}"]
    envs = record(out, specs, upload_timeout=8.0)
    lines = read_manifest(out / "episodes.jsonl")
    assert len(lines) == 3
    for r in lines:  # every episode recorded in full
        assert decode(out / r["video"]).count == r["frames"]
        assert r["not_uploaded"] == {specs[0]: ["stats", "video"], specs[1]: ["stats", "video"]}
    summary = envs.recorder.summary
    assert summary["uploads"][specs[2]]["not_sent"] == 0  # the working one is not held up
    text = "\n".join(summary["not_uploaded"])
    assert f"{specs[0]}: 3 episodes' statistics, 3 videos not sent (" in text
    assert "wandb:down: 3 episodes' statistics, 3 videos not sent (" in text
    assert "MlflowException" in text or "Connection" in text
    raw = [r for r in read_manifest(out / "episodes.jsonl", raw=True) if r.get("update")]
    assert len(raw) == 3


#: The slow trackers' test: the end of the run waits this long for uploads under way ...
SLOW_UPLOAD_TIMEOUT = 4.0
#: ... and the whole run (a fresh Python, start, steps, close) gets this much more: the
#: recording itself. Far below one answer of the crawling server (minutes), so an upload
#: on the recording's path, or an end of run that waits for one, cannot end within it.
RUN_MARGIN = 30.0

SLOW_RUN = """
import json, sys
from rlcapture import CaptureVectorEnv
from rlcapture.envs import make_env_fn

out, timeout, specs = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
fn = make_env_fn("CartPole-v1", max_episode_steps=15)
envs = CaptureVectorEnv(
    [fn] * 3, out, loggers=specs, episodes_per_env=[2, 1, 1], upload_attempts=2,
    upload_timeout=timeout,
)
try:
    envs.reset(seed=0)
    for _ in range(40):
        envs.step(envs.action_space.sample())
finally:
    envs.close()
print(json.dumps(envs.recorder.summary))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("mlflow_server", "wandb_server"), [("hang", "crawl"), ("crawl", "hang")])
def test_trackers_that_hang_or_crawl_never_hold_up_the_run(
    tmp_path: Path, subprocess_env: dict[str, str], mlflow_server: str, wandb_server: str
) -> None:
    """Servers that accept and never answer, or answer one byte a second, as MLflow and W&B.

    The run (a script, as a user runs it) ends, ``close()`` included, within
    the upload timeout plus the recording's own time; the tracker that works
    beside them gets everything; what the slow ones did not take is named in
    NOT SENT and in the manifest. Steps/s beside such trackers:
    ``benchmarks/bench_hanging_tracker.py``.
    """
    assert answer_seconds() > SLOW_UPLOAD_TIMEOUT + RUN_MARGIN  # a crawl outlasts the bound
    out = tmp_path / "out"
    with SlowServer(mlflow_server) as mlflow_at, SlowServer(wandb_server) as wandb_at:
        env = {
            **subprocess_env,
            "WANDB_MODE": "online",
            "WANDB_BASE_URL": wandb_at.url,
            "WANDB_API_KEY": "x" * 40,
            "WANDB_DIR": str(tmp_path),
        }
        specs = [f"mlflow:{mlflow_at.url}", "wandb:slow", f"tensorboard:{tmp_path / 'tb'}"]
        try:
            done = subprocess.run(
                [sys.executable, "-c", SLOW_RUN, str(out), str(SLOW_UPLOAD_TIMEOUT), *specs],
                env=env, capture_output=True, text=True, timeout=SLOW_UPLOAD_TIMEOUT + RUN_MARGIN,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the run did not end within the upload timeout ({SLOW_UPLOAD_TIMEOUT:g} s) + "
                f"{RUN_MARGIN:g} s beside a {mlflow_server}ing MLflow and a {wandb_server}ing W&B"
            )
        assert done.returncode == 0, done.stderr[-3000:]
        assert mlflow_at.connections > 0 and wandb_at.connections > 0  # both were tried
    lines = read_manifest(out / "episodes.jsonl")
    assert len(lines) == 4
    slow = {specs[0]: ["stats", "video"], specs[1]: ["stats", "video"]}
    for r in lines:  # every episode recorded in full, and named as not sent to the slow ones
        assert decode(out / r["video"]).count == r["frames"]
        assert r["not_uploaded"] == slow
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["uploads"][specs[2]] == {"sent": 8, "not_sent": 0, "error": None}
    text = "\n".join(summary["not_uploaded"])
    assert len(summary["not_uploaded"]) == 2, text
    assert f"{specs[0]}: 4 episodes' statistics, 4 videos not sent (" in text
    assert "wandb:slow: 4 episodes' statistics, 4 videos not sent (" in text


def test_a_dead_uploader_is_named_with_its_exit_status(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Recorder(out, loggers=[f"tensorboard:{tmp_path / 'tb'}"], **FAST) as rec:
        uploader = rec._uploader
        assert uploader is not None
        os.kill(uploader.pid, signal.SIGKILL)
        uploader.proc.join(10)
        fn = make_env_fn("CartPole-v1", max_episode_steps=10)
        envs = CaptureVectorEnv([fn], rec, episodes_per_env=[1])
        envs.reset(seed=0)
        for _ in range(12):
            envs.step(envs.action_space.sample())
        envs.close()
    (line,) = rec.summary["not_uploaded"]
    assert (
        "died: signal SIGKILL (-9)" in line and "1 episode's statistics, 1 video not sent" in line
    )
    (r,) = read_manifest(out / "episodes.jsonl")
    assert decode(out / r["video"]).count == r["frames"]
    assert r["not_uploaded"] == {f"tensorboard:{tmp_path / 'tb'}": ["stats", "video"]}


# -- the command ---------------------------------------------------------------------------------
def test_cli_log(tmp_path: Path, capsys) -> None:
    tb = tmp_path / "tb"
    code = main(
        ["record", "CartPole-v1", "-n", "1", "-k", "1", "--max-episode-steps", "10", "-q",
         "-o", str(tmp_path / "out"), "--log", f"tensorboard:{tb}", "--upload-attempts", "1"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"tracker  tensorboard:{tb}: 2 uploads sent" in captured.out
    assert list(tb.glob("events.out.tfevents.*"))
    code = main(["record", "-k", "1", "-o", str(tmp_path / "x"), "--log", "neptune"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown tracker 'neptune'" in err


# -- training --------------------------------------------------------------------------------------
def test_sb3_callback_logs_rounds_at_the_training_timestep(tmp_path: Path) -> None:
    import csv

    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlcapture.sb3 import RecordCallback

    tb = tmp_path / "tb"
    m = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, device="cpu", seed=0)
    m.set_logger(configure(str(tmp_path / "sb3"), ["csv"]))
    cb = RecordCallback(
        "CartPole-v1", tmp_path / "rounds", every=64, episodes=2, num_envs=2,
        loggers=[f"tensorboard:{tb}"], **FAST,
    )  # fmt: skip
    m.learn(128, callback=cb)
    assert cb.uploads["not_uploaded"] == []
    assert [h["timesteps"] for h in cb.history] == [64, 128]
    expected = set()
    for h in cb.history:
        lines = read_manifest(Path(h["out"]) / "episodes.jsonl")
        assert [r["timestep"] for r in lines] == [h["timesteps"]] * 2  # the manifest says when
        expected |= {(h["timesteps"], float(r["return"])) for r in lines}
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert {(int(e.step), e.value) for e in acc.Scalars("rlcapture/return")} == expected
    assert len(acc.Images("rlcapture/video")) == 4
    assert len(list(tb.glob("events.out.tfevents.*"))) == 1  # one run for the whole training
    with open(tmp_path / "sb3" / "progress.csv") as f:
        logged = [row["rlcapture/return"] for row in csv.DictReader(f)]
    assert [float(v) for v in logged if v] == [h["mean_return"] for h in cb.history]


def test_the_recording_process_never_imports_a_tracker(tmp_path: Path, subprocess_env) -> None:
    """Tracker packages are loaded in the uploader process only (W&B alone takes a second)."""
    import subprocess

    code = (
        "import sys, rlcapture\n"
        f"rec = rlcapture.Recorder({str(tmp_path / 'out')!r}, loggers=['tensorboard', 'mlflow', 'wandb'])\n"
        "rec.close()\n"
        "print(sorted(m for m in ('wandb', 'mlflow', 'tensorboard') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
