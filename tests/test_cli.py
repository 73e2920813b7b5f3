import subprocess
import sys

import pytest

from offrec.cli import main
from offrec.logs import read_logs


def test_simulate_summary_query(tmp_path, capsys):
    assert (
        main(
            [
                "-q",
                "simulate",
                "--out",
                str(tmp_path / "l"),
                "--n-sessions",
                "200",
                "--horizon",
                "5",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("wrote ") and "(200 sessions" in out
    assert read_logs(tmp_path / "l").metadata["world_config"]["horizon"] == 5
    assert main(["summary", str(tmp_path / "l")]) == 0
    assert "ess_uniform" in capsys.readouterr().out
    assert (
        main(["query", str(tmp_path / "l"), "SELECT count(DISTINCT session_id) AS s FROM logs"])
        == 0
    )
    assert capsys.readouterr().out.split() == ["s", "200"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["simulate", "--out", "{tmp}/x", "--n-decisions", "-3"],
            "n_decisions must be >= 1; got -3",
        ),
        (
            ["simulate", "--out", "{tmp}/x", "--n-decisions", "10", "--horizon", "0"],
            "WorldConfig.horizon must be >= 1; got 0",
        ),
        (["simulate", "--out", "{tmp}/x"], "give exactly one of --n-decisions or --n-sessions"),
        (
            ["simulate", "--out", "{tmp}/x", "--n-decisions", "10", "--beta", "-1"],
            "beta must be > 0.0; got -1.0",
        ),
        (
            ["simulate", "--out", "{tmp}/x", "--n-decisions", "10", "--support", "1,500"],
            r"--support items must be in \[0, 100\)",
        ),
        (
            ["simulate", "--out", "{tmp}/x", "--n-decisions", "10", "--world", "{tmp}/none.toml"],
            "world config file not found",
        ),
        (["summary", "{tmp}/missing"], "no log at"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("offrec: error: ") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert list(tmp_path.iterdir()) == []


def test_console_script_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "offrec.cli", "simulate", "--out", str(tmp_path / "x"), "--n-decisions", "abc"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "invalid int value: 'abc'" in proc.stderr
