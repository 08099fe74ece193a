"""PNG sequences, keyframes, keep rules and the mosaic, end to end through the encoder."""

from __future__ import annotations

import contextlib
import os
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import LOSSLESS, decode
from envs_for_tests import Pattern, pattern_frame, pattern_seed
from PIL import Image

import rlcapture
from rlcapture._backend.keep import KeepPolicy, KeepRule, parse_keep
from rlcapture._backend.manifest import read_manifest
from rlcapture._backend.mosaic import LABEL_HEIGHT, layout, shrink
from rlcapture.errors import ConfigError


def run(out: Path, env_fn, n: int, episodes: int, seed: int = 7, **kwargs) -> list[dict]:
    """Step ``n`` envs until each finished ``episodes`` episodes; the folded manifest."""
    envs = rlcapture.CaptureVectorEnv([env_fn] * n, out, episodes_per_env=episodes, **kwargs)
    try:
        envs.reset(seed=seed)
        done = np.zeros(n, int)
        while (done < episodes).any():
            envs.step(np.zeros(n, int))
            for k in envs.finished_episodes:  # the env's infos are its own (no "episode")
                done[k] += 1
    finally:
        envs.close()
    return read_manifest(out / "episodes.jsonl")


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image)


# -- PNG sequences and keyframes ------------------------------------------------
@pytest.mark.parametrize("every", [1, 3])
def test_png_sequence_is_the_render(tmp_path: Path, every: int) -> None:
    lines = run(tmp_path, partial(Pattern, lengths=(7, 4)), 2, 2, frames=every, **LOSSLESS)
    assert len(lines) == 4
    for r in lines:
        folder = tmp_path / r["images"]
        assert folder.parent == tmp_path / "frames"
        assert folder.name == f"env{r['env']}-episode{r['episode']}"
        steps = list(range(0, r["length"] + 1, every))
        assert sorted(os.listdir(folder)) == [f"{s:06d}.png" for s in steps]
        assert r["image_count"] == len(steps)
        for s in steps:  # lossless: the file holds exactly what render() returned
            assert np.array_equal(png(folder / f"{s:06d}.png"), pattern_frame(pattern_seed(r), s))
        assert oct(os.stat(folder / "000000.png").st_mode & 0o777) == "0o600"
        # the video is written alongside, also lossless here
        assert decode(tmp_path / r["video"]).count == r["length"] + 1


def test_keyframes_first_every_k_and_last(tmp_path: Path) -> None:
    lines = run(tmp_path, partial(Pattern, lengths=(7,)), 1, 2, keyframes=3)
    for r in lines:
        stem = Path(r["video"]).with_suffix("")
        want = [f"{stem}-step{s:06d}.png" for s in (0, 3, 6, 7)]  # first, every 3, last
        assert r["keyframes"] == want
        for name, s in zip(want, (0, 3, 6, 7), strict=True):
            assert np.array_equal(png(tmp_path / name), pattern_frame(pattern_seed(r), s))
    # keyframes=True: only first and last
    lines = run(tmp_path / "b", partial(Pattern, lengths=(5,)), 1, 1, keyframes=True)
    assert [Path(p).name for p in lines[0]["keyframes"]] == [
        "env0-episode0-step000000.png",
        "env0-episode0-step000005.png",
    ]


def test_images_instead_of_video_gray_and_odd(tmp_path: Path) -> None:
    env_fn = partial(Pattern, lengths=(3,), shape=(9, 13, 1))
    lines = run(tmp_path, env_fn, 1, 1, videos=False, frames=1, keyframes=True)
    (r,) = lines
    assert r["video"] is None
    assert not any(p.suffix == ".mp4" for p in (tmp_path / "videos").iterdir())
    first = png(tmp_path / r["images"] / "000000.png")
    assert first.shape == (9, 13)  # grey stays grey, odd sizes stay odd
    assert np.array_equal(first, pattern_frame(pattern_seed(r), 0, (9, 13, 1))[:, :, 0])
    assert len(r["keyframes"]) == 2


def test_images_options_refused_with_advice(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to write"):
        rlcapture.Recorder(tmp_path / "a", videos=False)
    with pytest.raises(ConfigError, match="frames must be a positive integer"):
        rlcapture.Recorder(tmp_path / "b", frames=0)
    with pytest.raises(ConfigError, match="keyframes must be True"):
        rlcapture.Recorder(tmp_path / "c", keyframes=-2)
    with pytest.raises(ConfigError, match="worst:K"):
        rlcapture.Recorder(tmp_path / "d", keep="worst")
    with pytest.raises(ConfigError, match="mosaic must be the number of env tiles"):
        rlcapture.Recorder(tmp_path / "e", mosaic=0)


def test_overwrite_removes_images_and_mosaic(tmp_path: Path) -> None:
    run(tmp_path, Pattern, 2, 1, frames=1, mosaic=True)
    assert (tmp_path / "mosaic.mp4").exists() and any((tmp_path / "frames").iterdir())
    with pytest.raises(rlcapture.OutputExistsError):
        rlcapture.Recorder(tmp_path)
    rlcapture.Recorder(tmp_path, overwrite=True).close()
    assert not (tmp_path / "mosaic.mp4").exists()
    assert not (tmp_path / "frames").exists()


# -- keep rules -----------------------------------------------------------------
def ended(ret: float, end: str = "terminated") -> dict:
    return {"return": ret, "end": end}


def test_keep_worst_and_best_hold_k_each() -> None:
    policy = KeepPolicy(parse_keep("worst:2,best:1"))
    returns = [5, 3, 9, 1, 7, 9.5, 2]
    alive: set = set()
    for i, ret in enumerate(returns):
        d = policy.decide((0, i), ended(ret))
        if d.kept:
            alive.add((0, i))
        for key, why in d.evicted:
            assert "pushed out" in why
            alive.discard(key)
    by_return = {(0, i): r for i, r in enumerate(returns)}
    assert sorted(by_return[k] for k in alive) == [1, 2, 9.5]


def test_keep_failures_sample_and_unfinished() -> None:
    failures = KeepPolicy(parse_keep("failures"))
    assert failures.decide((0, 0), ended(10, "terminated")).kept
    assert not failures.decide((0, 1), ended(10, "truncated")).kept
    below = KeepPolicy(parse_keep("failures:5"))
    assert below.decide((0, 0), ended(4.9, "truncated")).why == "return below 5"
    assert not below.decide((0, 1), ended(5, "terminated")).kept
    # what cannot be judged is kept
    d = below.decide((0, 2), {"end": "error", "return": None})
    assert d.kept and "unfinished" in d.why
    # a reservoir sample holds exactly K, the same K for the same seed
    def sample(seed: int) -> set:
        p = KeepPolicy(parse_keep("sample:3"), seed=seed)
        alive: set = set()
        for i in range(50):
            d = p.decide((0, i), ended(i))
            alive |= {(0, i)} if d.kept else set()
            alive -= {k for k, _ in d.evicted}
        return alive

    assert len(sample(1)) == 3 and sample(1) == sample(1) != sample(2)

    # the same seed keeps the same episodes whatever order they end in
    def kept_in(order: list, spec: str) -> set:
        p = KeepPolicy(parse_keep(spec), seed=4)
        alive: set = set()
        for key in order:
            d = p.decide(key, ended(1.0))
            alive |= {key} if d.kept else set()
            alive -= {k for k, _ in d.evicted}
        return alive

    keys = [(e, k) for k in range(10) for e in range(4)]
    shuffled = sorted(keys, key=lambda k: hash((k[1] * 7919 + k[0]) % 97))
    assert kept_in(keys, "sample:5") == kept_in(shuffled, "sample:5")
    assert kept_in(keys, "sample:0.3") == kept_in(shuffled, "sample:0.3")
    frac = KeepPolicy(parse_keep("sample:0.5"), seed=0)
    kept = sum(frac.decide((0, i), ended(i)).kept for i in range(400))
    assert 150 < kept < 250


def test_an_episode_kept_for_good_is_never_pushed_out() -> None:
    policy = KeepPolicy((KeepRule("worst", count=1), KeepRule("failures")))
    assert policy.decide((0, 0), ended(1, "terminated")).why == "worst 1 by return, failure"
    d = policy.decide((0, 1), ended(0, "truncated"))  # pushes (0, 0) out of the worst 1
    assert d.kept and d.evicted == []  # but it is a failure: it stays


@pytest.mark.parametrize(
    "spec", ["", "worst", "worst:0", "best:x", "failures:nan", "sample:0", "sample:1.5", "nope:3"]
)
def test_bad_keep_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="keep rule"):
        parse_keep(spec)


def test_keep_deletes_discarded_files_and_says_why(tmp_path: Path) -> None:
    # returns per episode of env 0: 4, 6, 2, 8, 3 (length 2, rewards cycle)
    env_fn = partial(Pattern, lengths=(2,), rewards=(2.0, 3.0, 1.0, 4.0, 1.5))
    lines = run(tmp_path, env_fn, 1, 5, keep="worst:2", keyframes=True, frames=1)
    assert [r["return"] for r in lines] == [4, 6, 2, 8, 3]
    kept = {r["episode"] for r in lines if r["kept"]}
    assert kept == {2, 4}  # returns 2 and 3
    for r in lines:
        stem = f"env0-episode{r['episode']}"
        exists = (tmp_path / "videos" / f"{stem}.mp4").exists()
        assert exists == r["kept"], r
        assert (tmp_path / "frames" / stem).exists() == r["kept"]
        assert any((tmp_path / "videos").glob(f"{stem}-step*.png")) == r["kept"]
        if r["kept"]:
            assert r["why"] == "worst 2 by return" and r["video"] == f"videos/{stem}.mp4"
        else:
            assert r["video"] is None and r["images"] is None and r["keyframes"] == []
            assert r["frames"] == 3  # the counts stay
    raw = read_manifest(tmp_path / "episodes.jsonl", raw=True)
    updates = [r for r in raw if r.get("update")]
    # episode 0 (4) then 1 (6) were kept at first and pushed out by 2 and 4
    assert [(u["episode"], u["kept"]) for u in updates] == [(1, False), (0, False)]
    assert all(u["why"] == "pushed out of the worst 2 by return" for u in updates)
    assert set(updates[0]) == {"env", "episode", "update", "kept", "why"}


def test_keep_in_the_cli_per_seed(tmp_path: Path, capsys) -> None:
    from rlcapture.cli import main

    out = tmp_path / "run"
    code = main(["record", "-n", "2", "-k", "6", "--seeds", "0,1", "--keep", "worst:2",
                 "--keyframes", "--out", str(out), "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert text.count("kept     2 of 6 episodes' files") == 2
    for seed in (0, 1):
        lines = read_manifest(out / f"seed-{seed}" / "episodes.jsonl")
        kept = [r for r in lines if r["kept"]]
        assert len(kept) == 2
        worst = sorted(r["return"] for r in lines)[:2]
        assert sorted(r["return"] for r in kept) == worst
        videos = sorted(p.name for p in (out / f"seed-{seed}" / "videos").glob("*.mp4"))
        assert videos == sorted(Path(r["video"]).name for r in kept)
        assert all(len(r["keyframes"]) == 2 for r in kept)
    assert main(["record", "-k", "1", "--keep", "best:-1", "--out", str(tmp_path / "x")]) == 2
    assert "keep rule 'best:-1'" in capsys.readouterr().err


# -- mosaic -------------------------------------------------------------------------
def test_layout_fits_the_canvas() -> None:
    assert layout(4, 400, 600, (1280, 720)) == (2, 2, 2)
    assert layout(1, 400, 600, (1280, 720)) == (1, 1, 1)
    cols, rows, f = layout(16, 400, 600, (1280, 720))
    assert (cols, rows) == (4, 4) and cols * (600 // f) <= 1280 and rows * (400 // f + LABEL_HEIGHT) <= 720


def test_shrink_is_a_rounded_box_average() -> None:
    src = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    out = np.zeros((3, 4, 3), np.uint8)
    shrink(src, 2, out)
    want = np.rint(src[:6, :8].reshape(3, 2, 4, 2, 3).astype(float).mean(axis=(1, 3)) + 1e-9)
    assert np.array_equal(out, want.astype(np.uint8))
    grey = np.zeros((4, 4, 1), np.uint8) + 9
    out = np.zeros((2, 2, 3), np.uint8)
    shrink(grey, 2, out)
    assert (out == 9).all()


def test_mosaic_tiles_show_each_env(tmp_path: Path) -> None:
    lines = run(tmp_path, partial(Pattern, lengths=(5,), shape=(40, 60, 3)), 3, 2, mosaic=True, **LOSSLESS)
    assert len(lines) == 6
    # 3 tiles of 40x60 fit at full size: 2 columns, 2 rows
    video = decode(tmp_path / "mosaic.mp4", keep=True)
    assert (video.width, video.height) == (120, 2 * (40 + LABEL_HEIGHT))
    # about one mosaic frame per vector step (2 episodes of 6 frames per env);
    # more when the envs' frames reach the encoder out of step
    assert 12 <= video.count <= 40
    # every frame of every env is shown, unshrunk, in its tile under a label
    for r in lines:
        row, col = divmod(r["env"], 2)
        y, x = row * (40 + LABEL_HEIGHT) + LABEL_HEIGHT, col * 60
        tiles = [f[y : y + 40, x : x + 60] for f in video.frames]
        for step in range(6):
            want = pattern_frame(pattern_seed(r), step, (40, 60, 3))
            assert any(np.array_equal(t, want) for t in tiles), (r["env"], r["episode"], step)
        label = video.frames[-1][y - LABEL_HEIGHT : y, x : x + 60]
        assert label.min() < 64 and label.max() > 200  # text on a dark strip
    # the per-env videos are still there, one per episode
    assert all(decode(tmp_path / r["video"]).count == 6 for r in lines)


# -- a training loop that owns its vector env ------------------------------------------
def test_training_loop_records_every_nth_episode(tmp_path: Path) -> None:
    import gymnasium as gym

    from rlcapture.results.plot import plot_manifest

    logged = []
    with rlcapture.Recorder(tmp_path, **LOSSLESS) as recorder:
        def make() -> gym.Env:  # episode statistics in infos come from the env, as users wrap it
            return gym.wrappers.RecordEpisodeStatistics(Pattern(lengths=(3, 5)))

        fns = [rlcapture.CaptureWrapper.factory(make, recorder, i, record="every:3") for i in range(2)]
        envs = gym.vector.AsyncVectorEnv(fns)
        envs.reset(seed=1)
        for _ in range(40):
            _, _, _, _, info = envs.step(np.zeros(2, int))
            for i in np.flatnonzero(info.get("_episode", [])):
                logged.append((int(i), float(info["episode"]["r"][i]), int(info["episode"]["l"][i])))
        envs.close()
    lines = read_manifest(tmp_path / "episodes.jsonl")
    finished = [r for r in lines if r["end"] in ("terminated", "truncated")]
    # every episode is logged in the loop and in the manifest, with the same statistics
    assert sorted((r["env"], r["return"], r["length"]) for r in finished) == sorted(logged)
    for r in finished:
        if r["episode"] % 3 == 0:
            frames = decode(tmp_path / r["video"], keep=True).frames
            assert len(frames) == r["length"] + 1
            last = frames[-1][:37, :51]  # videos pad odd sizes
            assert np.array_equal(last, pattern_frame(pattern_seed(r), r["length"]))  # the terminal frame
        else:
            assert r["video"] is None and not r["recorded"]
    curve = plot_manifest(tmp_path)
    with Image.open(curve) as image:
        assert image.format == "PNG" and image.width > 300


def test_a_png_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    from envs_for_tests import NoisyEnv

    envs = rlcapture.CaptureVectorEnv([partial(NoisyEnv, length=3, side=256)], tmp_path, frames=1)
    try:
        # a full disk for the encoder's files only: a noise PNG is ~200 kB
        psutil.Process(envs.recorder.encoder_pid).rlimit(psutil.RLIMIT_FSIZE, (50_000, 50_000))
        envs.reset(seed=0)
        # Step until the encoder's failure reaches the step path (a poll with a deadline).
        deadline = time.monotonic() + 60
        with pytest.raises(rlcapture.EncoderError, match=r"frames/env0-episode0/0000\d\d\.png.*File too large"):
            while time.monotonic() < deadline:
                envs.step(np.zeros(1, int))
    finally:
        with contextlib.suppress(rlcapture.RLCaptureError):
            envs.close()
    (line,) = read_manifest(tmp_path / "episodes.jsonl")
    assert "File too large" in line["error"]


def test_keep_judges_only_recorded_episodes(tmp_path: Path) -> None:
    # every other episode recorded; returns 4, 6, 2, 8, 3, 5 (recorded: 4, 2, 3)
    env_fn = partial(Pattern, lengths=(2,), rewards=(2.0, 3.0, 1.0, 4.0, 1.5, 2.5))
    lines = run(tmp_path, env_fn, 1, 6, keep="best:2", record="every:2")
    recorded = [r for r in lines if r["recorded"]]
    assert [r["return"] for r in recorded] == [4, 2, 3]
    assert all("kept" not in r for r in lines if not r["recorded"])
    assert sorted(r["return"] for r in recorded if r["kept"]) == [3, 4]
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2
