"""``rlcapture bench``: a tiny real run, a user's own env, and bad input."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from rlcapture.bench.report import frame_ceiling, summarize_trials
from rlcapture.bench.variants import variant_names
from rlcapture.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _optional_missing() -> set[str]:
    missing = set()
    try:
        import moviepy  # noqa: F401
    except ImportError:
        missing |= {"gym-vec", "gym-worker", "sb3"}
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        missing.add("sb3")
    return missing


@pytest.mark.timeout(120)
def test_tiny_cartpole_run_reports_every_variant(tmp_path: Path, capsys) -> None:
    out = tmp_path / "res.json"
    code, stdout, _ = run(
        capsys, "bench", "CartPole-v1", "--num-envs", "1", "2", "--frames", "200",
        "--repeats", "1", "--json", str(out), "-q",
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    # moviepy and SB3 are in the test extra: the anchors (Gymnasium's RecordVideo, vector
    # and per worker, and SB3's VecVideoRecorder) run here and must write frames too.
    assert not _optional_missing(), "install the test extra: the bench's anchors need moviepy"
    expected = [v for v in variant_names(20) if v not in _optional_missing()]
    assert {"gym-vec", "gym-worker", "sb3"} <= set(expected)
    assert expected[:4] == ["none", "render", "all", "every:20"]
    assert set(result["skipped"]) == set(variant_names(20)) - set(expected)
    got = {(r["n"], r["variant"]) for r in result["results"]}
    assert got == {(n, v) for n in (1, 2) for v in expected}
    for r in result["results"]:
        assert r["steps_per_s"] > 0 and r["run_s"] > 0
        assert r["cpu_s"] > 0 and r["cpu_ms_per_step"] > 0
        assert 0 < r["peak_pss_mb"] < 10_000
        assert r["env_steps"] >= 200
        if r["variant"] in ("none", "render"):
            assert r["frames"] == 0
        else:  # every recording variant wrote frames
            assert r["frames"] > 0 and r["frames_per_s"] > 0
        if r["variant"] == "all":  # the reset frame, then one per step
            assert r["frames"] == r["env_steps"] + r["n"]
            assert 0 < r["ceiling_pct"] < 200
        if r["variant"] != "none":
            assert r["overhead_pct"] > 0  # rendering always costs something
    for n in ("1", "2"):
        c = result["costs"][n]
        assert c["step_ms"] > 0 and c["render_ms"] > 0 and c["encode_ms"] > 0
        assert c["copy_ms"] > 0 and c["ceiling_frames_per_s"] > 0
    assert result["machine"]["cores"] >= 1
    # the terminal table and the chart
    assert "rlcapture every frame" in stdout and "ceiling" in stdout
    png = out.with_suffix(".png")
    with Image.open(png) as img:
        img.load()
        assert img.format == "PNG" and img.width > 400 and img.height > 200


ENV_MODULE = """
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Blink(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self):
        self.render_mode = "rgb_array"
        self.observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(3)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 1.0, self.t >= 10, False, {}

    def render(self):
        return np.full((48, 64, 3), 20 * self.t, np.uint8)


def make():
    return Blink()


def make_human():
    env = Blink()
    env.render_mode = "human"
    return env


def policy(obs):
    return np.ones(len(obs), np.int64)
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module of the user's, in the current folder (as ``python -m`` would import it)."""
    (tmp_path / "my_bench_envs.py").write_text(textwrap.dedent(ENV_MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_bench_envs", raising=False)
    yield tmp_path
    sys.modules.pop("my_bench_envs", None)


@pytest.mark.timeout(90)
def test_module_factory_and_policy(user_module: Path, capsys) -> None:
    code, stdout, _ = run(
        capsys, "bench", "my_bench_envs:make", "-n", "2", "--frames", "100", "-r", "1",
        "--variants", "none,render,all,every", "--every-episode", "2",
        "--policy", "my_bench_envs:policy", "-q",
    )  # fmt: skip
    assert code == 0, stdout
    out = user_module / "bench-my_bench_envs_make.json"
    result = json.loads(out.read_text())
    assert result["probe"]["frame_shape"] == [48, 64, 3]
    rows = {r["variant"]: r for r in result["results"]}
    assert set(rows) == {"none", "render", "all", "every:2"}
    assert rows["all"]["frames"] == 2 * 50 + 2
    # 10-step episodes (11 vector steps with the autoreset), 50 steps per env:
    # episodes 0, 2 and the start of 4 of each env are recorded.
    assert 0 < rows["every:2"]["frames"] < rows["all"]["frames"]
    with Image.open(user_module / "bench-my_bench_envs_make.png") as img:
        assert img.format == "PNG"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["NoSuchEnv-v0"], "unknown env id"),
        (["no_such_module_xyz:make"], "cannot import"),
        (["my_bench_envs:nothing"], "has no"),
        (["my_bench_envs:make_human"], "render_mode"),
        (["CartPole-v1", "--variants", "none,bogus"], "unknown variant"),
        (["CartPole-v1", "--policy", "my_bench_envs:nothing"], "has no"),
        (["CartPole-v1", "--json", "no/such/folder/x.json"], "no folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(user_module: Path, capsys, argv, words) -> None:
    code, _, err = run(capsys, "bench", *argv, "-q")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlcapture: error:"), err
    assert words in lines[0]
    assert not list(user_module.glob("bench-*"))


def test_bad_numbers_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "CartPole-v1", "--num-envs", "0"])
    assert exc.value.code == 2
    assert "--num-envs" in capsys.readouterr().err


def test_ceiling_bounds() -> None:
    """The machine's CPU bounds many envs; one env's own process bounds a single env."""
    # 2 cores, 16 envs: CPU-bound, step + render + encode = 4 ms a frame
    assert frame_ceiling(2, 16, 0.5, 2.5, 1.0)[0] == pytest.approx(500.0)
    # 1 env: it steps and renders in one process, 3 ms a frame, whatever the cores
    assert frame_ceiling(2, 1, 0.5, 2.5, 1.0)[0] == pytest.approx(1000 / 3.0)
    assert frame_ceiling(16, 1, 0.5, 2.5, 1.0)[1] == pytest.approx(16000 / 3.5)


def test_summary_math() -> None:
    """Overhead, render and encode costs and the ceiling, from made-up trials."""

    def trial(variant: str, cpu: float, run_s: float, frames: int, encoder: float | None) -> dict:
        return {
            "variant": variant, "n": 2, "env_steps": 1000, "frames": frames,
            "frames_rendered": 1002 if variant == "render" else frames,
            "steps_per_s": 1000 / run_s, "frames_per_s": frames / run_s, "cpu_s": cpu,
            "main_cpu_s": 0.1, "encoder_cpu_s": encoder, "encoder_cpu_before_close_s": encoder,
            "peak_pss_mb": 50.0, "run_s": run_s, "close_s": 0.1, "setup_s": 0.2,
            "other_load_cores": 0.0,
        }  # fmt: skip

    trials = [
        trial("none", 0.5, 0.5, 0, 0.0),
        trial("render", 0.5 + 1.002, 1.0, 0, 0.0),  # 1 ms per rendered frame
        trial("all", 4.0, 2.0, 1002, 1.503),  # 1.5 ms per encoded frame
        trial("every:20", 0.8, 0.6, 100, 0.15),  # 0.3 ms extra a step for 100 frames
    ]
    rows, costs = summarize_trials(trials, ["none", "render", "all", "every:20"], [2], 2, 0.05)
    c = costs["2"]
    assert c["step_ms"] == pytest.approx(0.5)
    assert c["render_ms"] == pytest.approx(1.0)
    assert c["encode_ms"] == pytest.approx(1.5)
    # 2 cores / (step + render + encode); the older bound left the step out
    assert c["ceiling_frames_per_s"] == pytest.approx(2000 / 3.0)
    assert c["ceiling_before_2026_11_30_frames_per_s"] == pytest.approx(2000 / 2.5)
    by = {r["variant"]: r for r in rows}
    assert by["render"]["overhead_pct"] == pytest.approx(50.0)
    assert by["all"]["overhead_pct"] == pytest.approx(75.0)
    assert by["all"]["ceiling_pct"] == pytest.approx(100 * 501 / (2000 / 3.0))
    assert by["none"]["ceiling_pct"] is None
    # every frame against rendering alone, whole tree per step
    assert by["all"]["cpu_vs_render"] == pytest.approx(4.0 / 1.502)
    assert by["all"]["cpu_vs_render_paired"] == pytest.approx(4.0 / 1.502)  # one repeat
    # 1 in 20: extra CPU 0.3 ms/step against 0.1 x (1.0 + 1.5) ms
    assert by["every:20"]["extra_cpu_ms_per_step"] == pytest.approx(0.3)
    assert by["every:20"]["lower_bound_ms_per_step"] == pytest.approx(0.25)
    assert by["every:20"]["extra_over_bound"] == pytest.approx(1.2)
    assert by["every:20"]["extra_over_bound_paired"] == pytest.approx(0.3 / 0.25)  # one repeat
    assert by["all"]["extra_over_bound"] is None


def test_sparse_extra_paired_per_repeat() -> None:
    """A sparse run's extra CPU is taken against "none" of its own repeat: drift between repeats cancels."""

    def trial(variant: str, repeat: int, cpu: float, frames: int) -> dict:
        return {
            "variant": variant, "n": 4, "repeat": repeat, "env_steps": 1000, "frames": frames,
            "frames_rendered": 1004 if variant == "render" else frames,
            "steps_per_s": 1000.0, "frames_per_s": frames / 1.0, "cpu_s": cpu,
            "main_cpu_s": 0.1, "encoder_cpu_s": 0.0015 * frames, "encoder_cpu_before_close_s": None,
            "peak_pss_mb": 50.0, "run_s": 1.0, "close_s": 0.1, "setup_s": 0.2,
            "other_load_cores": 0.0,
        }  # fmt: skip

    trials = []
    # Repeat r runs on a machine 1 + r/2 times slower; each sparse run costs
    # exactly its bound (50 frames x (1.0 + 1.5) ms at speed 1) more than "none".
    for r, slow in enumerate((1.0, 1.5, 2.0)):
        trials += [
            trial("none", r, 0.5 * slow, 0),
            trial("render", r, (0.5 + 1.004) * slow, 0),
            trial("all", r, 4.0, 1000),
            trial("every:20", r, (0.5 + 0.125) * slow, 50),
        ]
    # the repeat order is shuffled so "none" of one repeat sits beside "every" of another
    trials[0], trials[4] = trials[4], trials[0]
    rows, _ = summarize_trials(trials, ["none", "render", "all", "every:20"], [4], 2, None)
    sparse = next(r for r in rows if r["variant"] == "every:20")
    # The medians give render 1.5 ms and encode 1.5 ms a frame, so each repeat's
    # bound is 50 x 3.0 ms and its extra slow x 0.125 s: the median is at slow = 1.5.
    assert sparse["extra_over_bound_paired"] == pytest.approx(1.5 * 0.125 / 0.15)
