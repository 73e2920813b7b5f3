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
        [
            sys.executable,
            "-m",
            "offrec.cli",
            "simulate",
            "--out",
            str(tmp_path / "x"),
            "--n-decisions",
            "abc",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "invalid int value: 'abc'" in proc.stderr


def test_train_evaluate_recommend_round_trip(tmp_path, capsys):
    logs, model = str(tmp_path / "logs"), str(tmp_path / "m")
    assert (
        main(
            [
                "-q",
                "simulate",
                "--out",
                logs,
                "--n-decisions",
                "3000",
                "--n-users",
                "300",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "bandit",
                logs,
                "--learner",
                "linucb",
                "--head",
                "epsilon_greedy:0.2",
                "--out",
                model,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                logs,
                "--policy",
                model,
                "--estimators",
                "ips,snips",
                "--n-bootstrap",
                "50",
                "--json",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    import json

    rows = json.loads((tmp_path / "e.json").read_text())["estimates"]
    assert [r["estimator"] for r in rows] == ["ips", "snips"] and all(
        r["low"] <= r["value"] <= r["high"] for r in rows
    )
    capsys.readouterr()
    assert main(["recommend", model, "--profile", "sports=1", "--k", "3"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith(("1 ", "2 ", "3 "))]
    assert len(lines) == 3 and "sports" in lines[0]


def test_evaluate_with_probability_file_matches_hand_ips(tmp_path, capsys):
    import numpy as np

    logs = tmp_path / "logs"
    assert (
        main(
            [
                "-q",
                "simulate",
                "--out",
                str(logs),
                "--n-decisions",
                "500",
                "--n-users",
                "100",
                "--policy",
                "uniform",
            ]
        )
        == 0
    )
    data = read_logs(logs)
    probs = np.zeros((500, 100))
    probs[:, 7] = 1.0  # always item 7
    np.save(tmp_path / "p.npy", probs)
    assert (
        main(
            [
                "evaluate",
                str(logs),
                "--probs",
                str(tmp_path / "p.npy"),
                "--estimators",
                "ips",
                "--interval",
                "normal",
                "--json",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    import json

    result = json.loads((tmp_path / "e.json").read_text())
    value = result["estimates"][0]["value"]
    assert result["mode"] == "bandit" and any(
        "low effective sample size" in w for w in result["warnings"]
    )
    assert value == pytest.approx(np.mean((data.action == 7) * data.reward * 100))
    np.save(tmp_path / "bad.npy", probs[:10])
    assert main(["evaluate", str(logs), "--probs", str(tmp_path / "bad.npy")]) == 2
    assert "--probs must have one row per log row" in capsys.readouterr().err


def test_import_csv_cli(tmp_path, capsys):
    src = tmp_path / "mine.csv"
    src.write_text("user,item,clicked,p,age\nu1,shoe,1,0.2,31\nu1,hat,0,0.5,31\nu2,shoe,0,0.2,40\n")
    argv = [
        "import",
        "csv",
        str(src),
        "--out",
        str(tmp_path / "o"),
        "--action",
        "item",
        "--reward",
        "clicked",
        "--pscore",
        "p",
        "--session",
        "user",
        "--context",
        "age",
    ]
    assert main(argv) == 0
    assert "imported 3 rows (2 actions, context width 1" in capsys.readouterr().out
    src.write_text("user,item,clicked,p,age\nu1,shoe,1,,31\n")
    assert main([*argv[:4], str(tmp_path / "o2"), *argv[5:]]) == 2
    assert "missing propensity" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
