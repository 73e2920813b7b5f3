"""The README runs as written: its tour (shell and Python, in order) and "Bring your own
logs" run in a temporary folder, so the README cannot drift from the code.

Sizes: by default (``OFFREC_README_FULL`` unset) the long-running numbers are made
small by the substitutions in :data:`SMALL` (sizes only; the commands and options are
the README's) and the ``offrec run`` lines, whose pipelines have smoke tests of their
own, are skipped. ``OFFREC_README_FULL=1 pytest -m slow tests/test_readme.py`` runs the
README exactly as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FULL = os.environ.get("OFFREC_README_FULL") == "1"

SMALL: list[tuple[str, str]] = [
    (r"--n-decisions 100000\b", "--n-decisions 5000"),
    (r"n_decisions=100_000", "n_decisions=5_000"),
    (r"--n-sessions 20000\b", "--n-sessions 500"),
    (r"--n-steps 20000\b", "--n-steps 100"),
    (r"n_steps=20_000", "n_steps=100"),
    (r"--n-steps 100000\b", "--n-steps 2000"),
    (r"--seeds 5\b", "--seeds 2 --n-rows 5000 --n-bootstrap 50"),
    (r"--estimators ips,snips,dr --json", "--estimators ips,snips,dr --n-bootstrap 100 --json"),
]


TOUR_SECTIONS = ("### 1. ", "### 2. ", "### 3. ", "## Bring your own logs")
"""The README sections whose blocks run in order: the numbered tour steps (a newcomer's
first session, on this machine) and "Bring your own logs". Other sections (engines on a
cluster, pipelines) name resources a test machine does not have."""


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of the fenced bash/python blocks of :data:`TOUR_SECTIONS`, in
    README order; each section runs to the next heading of its level or above."""
    found: list[tuple[int, str]] = []
    for head in TOUR_SECTIONS:
        start = text.index("\n" + head) + 1
        level = head.split(" ")[0]
        stops = [text.find("\n" + "#" * k + " ", start + 1) for k in range(1, len(level) + 1)]
        end = min([s for s in stops if s != -1], default=len(text))
        found.append((start, text[start:end]))
    return [
        b
        for _, part in sorted(found)
        for b in re.findall(r"```(bash|python)\n(.*?)```", part, flags=re.S)
    ]


def _shrink(code: str) -> str:
    if FULL:
        return code
    for pattern, repl in SMALL:
        code = re.sub(pattern, repl, code)
    return "\n".join(ln for ln in code.splitlines() if not ln.lstrip().startswith("offrec run "))


def _tour(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    found = blocks(readme)
    assert (
        sum(lang == "bash" for lang, _ in found) >= 4
        and sum(lang == "python" for lang, _ in found) >= 3
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "offrec"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m offrec.cli "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    (work / "pipelines").symlink_to(ROOT / "pipelines")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    namespace: dict = {}
    old = Path.cwd()
    os.chdir(work)
    try:
        for i, (lang, code) in enumerate(found):
            code = _shrink(code)
            if lang == "bash":
                res = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", code],
                    env=env,
                    cwd=work,
                    capture_output=True,
                    text=True,
                )
                assert res.returncode == 0, (
                    f"README block {i} (bash) failed:\n{code}\n{res.stderr[-2000:]}"
                )
            else:
                try:
                    exec(compile(code, f"README block {i}", "exec"), namespace)
                except Exception as exc:  # pragma: no cover - the failure message is the point
                    raise AssertionError(
                        f"README block {i} (python) failed:\n{code}\n{exc!r}"
                    ) from exc
    finally:
        os.chdir(old)


def test_tour_evaluates_on_held_out_rows():
    """The tour must not score a model on the rows it was trained on."""
    text = (ROOT / "README.md").read_text()
    bash = "\n".join(code for lang, code in blocks(text) if lang == "bash")
    trained_on = set(re.findall(r"^offrec train (?:bandit|rl) (\S+)", bash, flags=re.M))
    evaluated = re.findall(r"^offrec evaluate (\S+)", bash, flags=re.M)
    assert evaluated and trained_on
    for log in evaluated:
        assert log not in trained_on, f"offrec evaluate {log} scores models on their training rows"
    py = "\n".join(code for lang, code in blocks(text) if lang == "python")
    assert re.search(r"evaluate\((test\b|\"data/demo-test\")", py), (
        "the Python tour must evaluate on the held-out log"
    )


@pytest.mark.skipif(FULL, reason="the full-size run is the slow test")
def test_readme_tour_runs_small(tmp_path):
    import torch

    torch.set_num_threads(1)
    _tour(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="set OFFREC_README_FULL=1 to run the README at full size")
def test_readme_tour_runs_full_size(tmp_path):
    _tour(tmp_path)
