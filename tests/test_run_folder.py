"""The run folder (what a recording owns, overwrite, the --seeds index) and the manifest module.

The CLI tests replay, as a new user would, the two defects of issue 18:
``--overwrite`` left what was derived from the old recording (report,
plots, tracker folders), and a ``--seeds`` recording over a plain one left
the plain one's manifest, which report and plot then showed.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
from conftest import REPO, read_manifest

import rlcapture
from rlcapture._backend.manifest import (
    MANIFEST,
    ManifestFollower,
    ManifestWriter,
    file_names,
    forget_files,
    rename_files,
)
from rlcapture._backend.manifest import (
    read_manifest as read_lines,
)
from rlcapture._backend.run_folder import KeptFilesWarning, RunFolder
from rlcapture.cli import main
from rlcapture.results.plot import load_series


def _report_data(page: Path) -> dict:
    html = page.read_text()
    return json.loads(html.split('id="rlcapture-data">')[1].split("</script>")[0])


def _record(out: Path, *extra: str) -> None:
    argv = ["record", "CartPole-v1", "-n", "2", "--max-episode-steps", "30", "--out", str(out), "-q", *extra]
    assert main(argv) == 0


# -- the manifest module ---------------------------------------------------------------
def test_the_manifest_file_is_named_in_one_module() -> None:
    """The literal is code in the manifest module only (issue 18: it was in 11)."""
    naming = []
    for path in sorted((REPO / "rlcapture").rglob("*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.Constant) and n.value == MANIFEST for n in ast.walk(tree)):
            naming.append(path.relative_to(REPO / "rlcapture").as_posix())
    assert naming == ["_backend/manifest.py"]


def test_the_reader_skips_a_torn_last_line_and_folds_updates(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST
    writer = ManifestWriter(str(path))
    writer.write({"env": 0, "episode": 0, "return": 1.0, "length": 3, "video": "videos/a.mp4"})
    writer.write({"env": 0, "episode": 1, "return": 2.0, "length": 4, "keyframes": ["videos/b.png"]})
    writer.write({"env": 0, "episode": 0, "kept": False, "why": "pushed out"}, update=True)
    writer.close()
    with open(path, "ab") as f:
        f.write(b'{"env": 0, "episode": 2, "ret')  # a line being written
    raw = read_lines(path, raw=True)
    assert [(r["episode"], r.get("update")) for r in raw] == [(0, None), (1, None), (0, True)]
    folded = read_lines(path)
    assert [r["episode"] for r in folded] == [0, 1]
    assert folded[0]["kept"] is False and folded[0]["video"] is None  # its file is gone
    assert folded[0]["step"] == 3 and folded[1]["step"] == 7
    with pytest.raises(FileNotFoundError):
        read_lines(tmp_path / "none.jsonl")
    assert read_lines(tmp_path / "none.jsonl", missing_ok=True) == []
    # What the test suite's reader insists on, the package reader tolerates.
    with pytest.raises(AssertionError, match="torn"):
        read_manifest(tmp_path)


def test_the_follower_reads_each_complete_line_once(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST
    follower = ManifestFollower(path)
    assert follower.read() == []  # not created yet
    with open(path, "ab") as f:
        f.write(b'{"env": 0, "episode": 0}\n{"env": 0, "epi')
    assert follower.read() == [{"env": 0, "episode": 0}]
    assert follower.read() == []  # the torn line waits
    # Its writer takes it back (a full disk) and writes another line in its place.
    with open(path, "r+b") as f:
        f.truncate(len(b'{"env": 0, "episode": 0}\n'))
    with open(path, "ab") as f:
        f.write(b'{"env": 1, "episode": 0}\n{"env": 1, "episode": 0, "update": true}\n')
    assert follower.read() == [{"env": 1, "episode": 0}, {"env": 1, "episode": 0, "update": True}]
    assert follower.read() == []


def test_the_fields_that_name_files() -> None:
    record = {"video": "videos/e.mp4", "images": "frames/e", "keyframes": ["videos/e-step0.png"], "frames": 3}
    assert file_names(record) == ["videos/e.mp4", "frames/e", "videos/e-step0.png"]
    rename_files(record, {"videos/e.mp4": "videos/seed7.mp4", "frames/e": "frames/seed7"})
    assert file_names(record) == ["videos/seed7.mp4", "frames/seed7", "videos/e-step0.png"]
    forget_files(record)
    assert file_names(record) == [] and record["frames"] == 3 and record["keyframes"] == []


# -- the run folder ---------------------------------------------------------------------
def test_what_belongs_to_a_recording(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    for name in (MANIFEST, "summary.json", "run.json", "report.html", "learning_curve.svg", "ppo-mosaic.mp4"):
        (tmp_path / name).write_text("x")
    for name in ("videos", "report_files", "wandb", "tensorboard", "mlruns", "replays", "seed-3", "step-100"):
        (tmp_path / name).mkdir()
    (tmp_path / "seed-3" / MANIFEST).write_text("")
    (tmp_path / "step-100" / "run.json").write_text("{}")
    (tmp_path / "step-7").mkdir()  # holds nothing of rlcapture's: the user's
    (tmp_path / "notes.txt").write_text("mine")
    assert [p.name for p in run.foreign()] == ["notes.txt", "step-7"]
    assert len(run.owned()) == 14
    assert run.recording() == [MANIFEST, "ppo-mosaic.mp4"]  # seed-3/: an empty manifest, no recording


def test_an_empty_manifest_is_no_recording_and_the_lock_is_one_run(tmp_path: Path) -> None:
    """The Recorder's rule, now also the Ray driver's: a run that ended before its first episode blocks nothing."""
    (tmp_path / MANIFEST).write_text("")
    first = RunFolder(tmp_path)
    first.open()
    with pytest.raises(rlcapture.OutputError, match="another rlcapture run"):
        RunFolder(tmp_path).open()
    first.release()
    (tmp_path / MANIFEST).write_text('{"env": 0}\n')
    with pytest.raises(rlcapture.OutputExistsError, match="already holds a recording"):
        RunFolder(tmp_path).open()
    assert (tmp_path / MANIFEST).read_text() == '{"env": 0}\n'
    again = RunFolder(tmp_path)
    again.open(overwrite=True)
    again.release()
    assert not (tmp_path / MANIFEST).exists()


def test_the_seeds_index_names_the_parts(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    for seed in (0, 5, 9):
        run.seed(seed).mkdir()
        (run.seed(seed) / MANIFEST).write_text("")
    assert [p.seed for p in run.parts()] == [0, 5, 9]  # no index: every seed-S/
    run.write_seeds_index([5, 9])
    (tmp_path / MANIFEST).write_text("")  # a stale top-level manifest loses to the index
    assert [(p.seed, p.folder) for p in run.parts()] == [(5, run.seed(5)), (9, run.seed(9))]
    run.seeds_index.unlink()
    assert [(p.seed, p.folder) for p in run.parts()] == [(None, tmp_path)]


# -- the defects, through the CLI ---------------------------------------------------------
def test_overwrite_removes_what_the_recording_left_and_keeps_a_foreign_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    _record(out, "-k", "4")
    assert main(["report", str(out)]) == 0
    assert main(["plot", str(out)]) == 0
    (out / "wandb" / "run-1").mkdir(parents=True)  # what W&B writes beside a recording
    (out / "notes.txt").write_text("mine")
    (out / "data").mkdir()
    derived = ["report.html", "report_files", "learning_curve.png", "wandb"]
    assert all((out / name).exists() for name in derived)
    capsys.readouterr()
    _record(out, "-k", "2", "--overwrite", "--seed", "100")
    err = capsys.readouterr().err
    assert not any((out / name).exists() for name in derived)
    assert (out / "notes.txt").read_text() == "mine" and (out / "data").is_dir()
    [warning] = [line for line in err.splitlines() if line.startswith("rlcapture: warning:")]
    assert "kept" in warning and "notes.txt" in warning and "data/" in warning
    assert sorted(r["seed"] for r in read_manifest(out)) == [100, 101]
    assert len(list((out / "videos").iterdir())) == 2


def test_overwrite_through_the_api_names_the_kept_files(tmp_path: Path) -> None:
    with rlcapture.Recorder(tmp_path):
        pass
    (tmp_path / "report.html").write_text("old report")
    (tmp_path / "model.zip").write_bytes(b"weights")
    with pytest.warns(KeptFilesWarning, match="model.zip"), rlcapture.Recorder(tmp_path, overwrite=True):
        pass
    assert not (tmp_path / "report.html").exists() and (tmp_path / "model.zip").exists()


def test_report_and_plot_after_seeds_over_a_plain_recording_show_the_seeds(tmp_path: Path, capsys) -> None:
    """README order: a plain recording in DIR, then the seeds evaluation into DIR with --overwrite."""
    out = tmp_path / "ppo-eval"
    _record(out, "-k", "4", "--seed", "500")
    capsys.readouterr()
    # Without --overwrite the plain recording is refused, and left as it was.
    argv = ["-k", "3", "--seeds", "2", "--record", "every:1"]
    assert main(["record", "CartPole-v1", "-n", "2", "--out", str(out), "-q", *argv]) == 2
    assert "already holds a recording" in capsys.readouterr().err
    assert len(read_manifest(out)) == 4
    _record(out, *argv, "--overwrite")
    assert not (out / MANIFEST).exists() and not (out / "videos").exists()
    expected = sorted(r["seed"] for s in (0, 3) for r in read_manifest(out / f"seed-{s}"))
    assert expected == [0, 1, 2, 3, 4, 5]

    assert main(["report", str(out)]) == 0
    data = _report_data(out / "report.html")
    assert sorted(e["reset_seed"] for e in data["episodes"]) == expected
    assert [s["seed"] for s in data["runs"][0]["per_seed"]] == [0, 3]
    videos = [e["video"] for e in data["episodes"] if e["video"]]
    assert len(videos) == 6 and all((out / v).is_file() and v.startswith("seed-") for v in videos)

    assert main(["plot", str(out)]) == 0
    series = load_series(out)
    assert [s.label for s in series] == ["seed 0", "seed 3"]
    assert sorted(len(s.returns) for s in series) == [3, 3]

    # And back: a plain recording over the seeds replaces them (index included).
    _record(out, "-k", "2", "--overwrite")
    assert not any(p.name.startswith("seed-") for p in out.iterdir())
    assert [p.seed for p in RunFolder(out).parts()] == [None]
    assert main(["report", str(out)]) == 0
    assert len(_report_data(out / "report.html")["episodes"]) == 2


def test_a_seed_folder_of_the_user_is_kept(tmp_path: Path) -> None:
    (tmp_path / "seed-1").mkdir()
    (tmp_path / "seed-1" / "my-notes.md").write_text("not a recording")
    run = RunFolder(tmp_path)
    (tmp_path / MANIFEST).write_text('{"env": 0}\n')
    with pytest.warns(KeptFilesWarning, match="seed-1/"):
        run.open(overwrite=True)
    run.release()
    assert (tmp_path / "seed-1" / "my-notes.md").exists() and not (tmp_path / MANIFEST).exists()
    assert os.listdir(tmp_path / "seed-1") == ["my-notes.md"]
