"""No traceback from the operating system (issue 21, item 4): a read-only file system, a
disk that fills during a write, a pipeline file that is not UTF-8, a truncated model
file, and ``offrec run --out`` pointed at a dataset or model folder. Each is one line on
stderr, exit 2, nothing half-written and the previous output intact; checked with real
subprocesses on real file systems (tmpfs mounts; skipped with the reason when mounting is
not permitted)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from offrec.cli import main

ROOT = Path(__file__).resolve().parents[1]


def offrec(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "offrec.cli", "-q", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=cwd,
    )


def one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("offrec: error: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    return r.stderr


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its SHA-256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _mount(path: Path, options: str) -> str | None:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    return None if r.returncode == 0 else (r.stderr.strip() or "mount failed")


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Path]:
    """A 1 MB tmpfs mounted under ``tmp_path`` (unmounted at the end)."""
    mnt = tmp_path / "mnt"
    why = _mount(mnt, "size=1m")
    if why is not None:
        pytest.skip(
            f"cannot mount a tmpfs here ({why}); run as root to test full and read-only disks"
        )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _remount(mnt: Path, options: str) -> None:
    r = subprocess.run(
        ["mount", "-o", f"remount,{options}", str(mnt)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("os")
    log, model = root / "log", root / "model"
    assert (
        main(["-q", "simulate", "--out", str(log), "--n-decisions", "300", "--n-items", "60"]) == 0
    )
    assert (
        main(["-q", "train", "bandit", str(log), "--learner", "linucb", "--out", str(model)]) == 0
    )
    return {"log": log, "model": model, "root": root}


def test_read_only_file_system_is_one_line_and_keeps_the_previous_output(made, tmpfs):
    first = offrec(
        "simulate", "--out", str(tmpfs / "log"), "--n-decisions", "200", "--n-items", "10"
    )
    assert first.returncode == 0, first.stderr
    before = tree(tmpfs)
    _remount(tmpfs, "ro")
    try:
        for argv in (
            [
                "simulate",
                "--out",
                str(tmpfs / "log"),
                "--n-decisions",
                "200",
                "--n-items",
                "10",
                "--overwrite",
            ],
            ["train", "bandit", str(made["log"]), "--learner", "linucb", "--out", str(tmpfs / "m")],
            [
                "evaluate",
                str(made["log"]),
                "--policy",
                str(made["model"]),
                "--n-bootstrap",
                "50",
                "--json",
                str(tmpfs / "e.json"),
            ],
        ):
            one_line_error(offrec(*argv), "cannot write", "read-only", "[Errno 30]")
        assert tree(tmpfs) == before
    finally:
        _remount(tmpfs, "rw")


def test_a_disk_that_fills_during_a_write_is_one_line_and_keeps_the_previous_model(made, tmpfs):
    model = tmpfs / "model"
    r = offrec("train", "bandit", str(made["log"]), "--learner", "linucb", "--out", str(model))
    assert r.returncode == 0, r.stderr
    before = tree(tmpfs)
    size = sum(p.stat().st_size for p in model.iterdir())
    # leave less room than one more model needs: the write fails part way, not up front
    free = os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize
    filler_size = max(free - size // 2, 0)
    (tmpfs / "filler").write_bytes(b"\0" * filler_size)
    before = tree(tmpfs)
    r = offrec(
        "train",
        "bandit",
        str(made["log"]),
        "--learner",
        "linucb",
        "--out",
        str(model),
        "--overwrite",
    )
    one_line_error(r, "cannot write", "the disk is full", "[Errno 28]", "previous output is intact")
    assert tree(tmpfs) == before  # no temporary folder left, the model as it was
    assert main(["-q", "recommend", str(model), "--profile", "sports=1", "--steps", "1"]) == 0


def test_non_utf8_pipeline_file_is_one_line(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    r = offrec("run", str(bad), "--out", str(tmp_path / "run"))
    one_line_error(r, "is not UTF-8 text: byte 0xe9 at position 11", str(bad))
    assert not (tmp_path / "run").exists()
    (tmp_path / "w.toml").write_bytes(b"[world]\nn_items = 5 # \xff\n")
    r = offrec(
        "simulate",
        "--world",
        str(tmp_path / "w.toml"),
        "--out",
        str(tmp_path / "l"),
        "--n-decisions",
        "5",
    )
    one_line_error(r, "world config file", "is not UTF-8 text: byte 0xff")
    assert not (tmp_path / "l").exists()


@pytest.mark.parametrize("name", ["world.json", "policy.json"])
def test_truncated_model_file_is_one_line_for_recommend(made, tmp_path, name):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(made["model"], model)
    text = (model / name).read_bytes()
    (model / name).write_bytes(text[: len(text) // 2])
    r = offrec("recommend", str(model), "--profile", "sports=1")
    one_line_error(r, f"{name} is not valid JSON (truncated or corrupt)")


@pytest.mark.parametrize("what", ["log", "model"])
def test_run_out_refuses_a_dataset_or_model_folder(made, tmp_path, what):
    import shutil

    target = tmp_path / what
    shutil.copytree(made[what], target)
    before = tree(target)
    r = offrec("run", str(ROOT / "pipelines" / "quickstart.toml"), "--out", str(target))
    kind = "a log dataset" if what == "log" else "a model or output folder"
    one_line_error(r, f"refusing to write a run into {target}: it is {kind}")
    assert tree(target) == before
