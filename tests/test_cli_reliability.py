"""The CLI without surprises, and every read validated (issue: reliability)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offrec.cli import build_parser, main
from offrec.core.version import __version__
from offrec.logs import read_logs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    out = tmp_path_factory.mktemp("logs") / "good"
    assert (
        main(["-q", "simulate", "--out", str(out), "--n-decisions", "500", "--n-items", "20"]) == 0
    )
    return out


def _write(folder: Path, table: pa.Table) -> Path:
    folder.mkdir()
    pq.write_table(table, folder / "part-00000.parquet")
    return folder


def _col(table: pa.Table, name: str, values: np.ndarray, typ: pa.DataType) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values, typ))


def test_version_and_quiet_after_the_subcommand(good, capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"offrec {__version__}"
    assert main(["summary", str(good), "-q"]) == 0
    assert main(["summary", str(good), "--quiet"]) == 0


def _actions(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {w}", a) for w, a in _actions(sub))
        else:
            yield "", action


def test_every_option_has_help_with_its_default():
    parser = build_parser()
    for where, action in _actions(parser):
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        if action.required:  # no default to show
            assert action.help, f"{where} {action.option_strings} has no help"
            continue
        assert action.help, f"{where} {action.option_strings} has no help"
        text = parser.formatter_class("x")._get_help_string(action)  # type: ignore[attr-defined]
        assert "default" in text, f"{where} {action.option_strings}: no default shown in {text!r}"


def test_help_imports_no_heavy_dependency():
    code = (
        "import sys\nfrom offrec.cli import main\nmain(['--help'])\n"
        "heavy = [m for m in ('torch', 'd3rlpy', 'sklearn', 'scipy', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["simulate", "--policy", "uniform", "--beta", "2", "--n-decisions", "10"],
            "option(s) ['beta'] do not apply to the uniform logger; it takes: support",
        ),
        (
            ["simulate", "--policy", "softmax", "--epsilon", "0.2", "--n-decisions", "10"],
            "option(s) ['epsilon'] do not apply to the softmax logger",
        ),
        (
            ["simulate", "--n-decisions", "10", "--n-users", "100000000000"],
            "n_users=100,000,000,000 is too large: the world would need about",
        ),
        (
            ["simulate", "--n-decisions", "10", "--n-items", "10000000000"],
            "n_items=10,000,000,000 is too large",
        ),
        (["simulate", "--n-decisions", "1000000000000"], "not enough disk space for"),
    ],
)
def test_inapplicable_options_and_absurd_sizes_are_errors(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_library_errors_get_the_flag_hint(good, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["-q", "simulate", "--out", str(out), "--n-decisions", "10"]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "already exists; use --overwrite to replace it" in capsys.readouterr().err


def test_train_bandit_param_typo_lists_valid_keys(good, tmp_path, capsys):
    argv = [
        "train",
        "bandit",
        str(good),
        "--learner",
        "linucb",
        "--param",
        "alpah=1",
        "--out",
        str(tmp_path / "m"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown parameter(s) ['alpah'] for learner 'linucb'; valid: alpha" in err
    assert not (tmp_path / "m").exists()


def test_train_rl_zero_steps_is_an_error_not_a_default(good, tmp_path, capsys):
    assert main(["train", "rl", str(good), "--n-steps", "0", "--out", str(tmp_path / "m")]) == 2
    assert "n_steps must be >= 1; got 0" in capsys.readouterr().err


def test_train_rl_eval_prints_its_value(tmp_path, capsys):
    log = tmp_path / "s"
    assert (
        main(
            [
                "-q",
                "simulate",
                "--out",
                str(log),
                "--n-sessions",
                "60",
                "--horizon",
                "4",
                "--n-items",
                "10",
                "--n-users",
                "200",
            ]
        )
        == 0
    )
    capsys.readouterr()
    argv = [
        "-q",
        "train",
        "rl",
        str(log),
        "--algo",
        "dqn",
        "--n-steps",
        "40",
        "--eval",
        "--param",
        "eval_every=20",
        "--param",
        "eval_sessions=50",
        "--out",
        str(tmp_path / "m"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("true online value"))
    value = float(line.split(":")[1].split()[0])
    assert 0.0 <= value <= 4.0 and "clicks per session" in line


def test_summary_reports_problems_and_exits_2(good, tmp_path, capsys):
    t = pq.read_table(good / "part-00000.parquet")
    r = t.column("reward").to_numpy().copy()
    r[5] = np.nan
    p = t.column("pscore").to_numpy().copy()
    p[7] = 0.0
    bad = _write(
        tmp_path / "bad", _col(_col(t, "reward", r, pa.float32()), "pscore", p, pa.float64())
    )
    assert main(["summary", str(bad)]) == 2
    cap = capsys.readouterr()
    problems = cap.out.split("\nproblems\n")[1]
    assert "column 'pscore' must be in (0, 1]; row 7 has 0.0" in problems
    assert "column 'reward' must be finite; row 5 has nan" in problems
    assert "2 problem(s)" in cap.err
    assert main(["summary", str(good)]) == 0
    assert "none: the log passes every check" in capsys.readouterr().out


def _bad_files(good: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    raw = (good / "part-00000.parquet").read_bytes()
    cases = {}
    for name, data, msg in [
        ("zero", b"", "is empty (0 bytes)"),
        ("trunc", raw[: len(raw) // 2], "is not readable Parquet"),
        ("text", b"a,b\n1,2\n", "is not readable Parquet"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "part-00000.parquet").write_bytes(data)
        cases[name] = (tmp_path / name, msg)
    t = pq.read_table(good / "part-00000.parquet").drop(["pscore"])
    cases["nocol"] = (_write(tmp_path / "nocol", t), "missing required column(s) ['pscore']")
    return cases


def test_bad_files_are_one_line_errors_for_query_and_summary(good, tmp_path, capsys):
    for path, msg in _bad_files(good, tmp_path).values():
        assert main(["query", str(path), "SELECT 1"]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err
        assert main(["summary", str(path)]) == 2
        assert msg in capsys.readouterr().out


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("", "sql must be a non-empty SQL statement"),
        ("  ; ", "sql must be a non-empty SQL statement"),
        ("SELEC 1", "SQL error: Parser Error"),
        ("COPY (SELECT 1) TO 'evil.csv'", "file system operations are disabled"),
        ("SELECT * FROM read_csv('/etc/hostname')", "file system operations are disabled"),
        ("SET enable_external_access = true", "Cannot change configuration option"),
    ],
)
def test_query_sql_errors_and_locked_file_access(good, tmp_path, monkeypatch, capsys, sql, message):
    monkeypatch.chdir(tmp_path)
    assert main(["query", str(good), sql]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "evil.csv").exists()


def test_query_external_access_can_be_lifted(good, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sql = "COPY (SELECT count(*) AS n FROM logs) TO 'n.csv'"
    assert main(["query", str(good), sql, "--allow-external-access"]) == 0
    assert (tmp_path / "n.csv").read_text().split() == ["n", "500"]


def test_reward_outside_the_binary_domain_is_rejected_everywhere(good, tmp_path, capsys):
    t = pq.read_table(good / "part-00000.parquet")
    r = t.column("reward").to_numpy().copy()
    r[3] = 2.0
    bad = _write(tmp_path / "r2", _col(t, "reward", r, pa.float32()))
    with pytest.raises(ValueError, match=r"column 'reward' must be 0 or 1 .*; row 3 has 2.0"):
        read_logs(bad)
    assert main(["summary", str(bad)]) == 2
    assert (
        main(["train", "bandit", str(bad), "--learner", "linucb", "--out", str(tmp_path / "m")])
        == 2
    )
    assert "must be 0 or 1" in capsys.readouterr().err


def test_continuous_reward_is_declared_at_import_and_enforced(tmp_path, capsys):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"item": rng.choice([-5, 3, 1000], 60), "watch": rng.uniform(0, 300, 60), "p": 1 / 3}
    )
    df.to_csv(tmp_path / "w.csv", index=False)
    base = [
        "import",
        "csv",
        str(tmp_path / "w.csv"),
        "--action",
        "item",
        "--reward",
        "watch",
        "--pscore",
        "p",
    ]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "reward must be 0 or 1" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--reward-domain", "continuous"]) == 2
    assert "needs finite bounds" in capsys.readouterr().err
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "c"),
                "--reward-domain",
                "continuous",
                "--reward-low",
                "0",
                "--reward-high",
                "300",
            ]
        )
        == 0
    )
    data = read_logs(tmp_path / "c")
    assert data.reward_domain == {"kind": "continuous", "low": 0.0, "high": 300.0}
    assert data.value_label == "mean reward" and data.metadata["action_map"] == [-5, 3, 1000]
    with pytest.raises(ValueError, match="LinUCB needs a binary"):
        data.check_binary_reward("LinUCB")
    assert main(["summary", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "mean_reward" in out and "ctr" not in out.split("by step")[0]


def test_duplicated_rows_one_rule_for_reader_import_and_train(good, tmp_path, capsys):
    t = pq.read_table(good / "part-00000.parquet")
    dups = _write(tmp_path / "dups", pa.concat_tables([t, t.slice(10, 3)]))
    with pytest.raises(ValueError, match=r"3 duplicated row\(s\) .*rows 500, 501, 502"):
        read_logs(dups)
    assert read_logs(dups, repair="drop").n_rows == 500
    m = ["train", "bandit", str(dups), "--learner", "linucb", "--out", str(tmp_path / "m")]
    assert main(m) == 2
    assert "rows 500, 501, 502; use --repair drop" in capsys.readouterr().err
    assert main([*m, "--repair", "drop"]) == 0
    # import: the same rule on the source (with an identifying column)
    df = pd.DataFrame(
        {"ts": [0, 1, 2, 1], "item": ["a", "b", "a", "b"], "click": [1, 0, 0, 0], "p": 0.5}
    )
    df.to_csv(tmp_path / "d.csv", index=False)
    imp = [
        "import",
        "csv",
        str(tmp_path / "d.csv"),
        "--action",
        "item",
        "--reward",
        "click",
        "--pscore",
        "p",
    ]
    assert main([*imp, "--out", str(tmp_path / "i")]) == 2
    assert (
        "duplicated row (identical in every column) in 1 row(s); first rows 3"
        in capsys.readouterr().err
    )
    assert main([*imp, "--out", str(tmp_path / "i"), "--repair", "drop"]) == 0
    assert read_logs(tmp_path / "i").n_rows == 3


def test_import_context_free_log_with_sparse_negative_ids(tmp_path, capsys):
    df = pd.DataFrame({"item": [-7, 12, 10**9, -7, 12], "click": [1, 0, 0, 1, 1], "p": 1 / 3})
    df.to_csv(tmp_path / "c.csv", index=False)
    argv = [
        "import",
        "csv",
        str(tmp_path / "c.csv"),
        "--out",
        str(tmp_path / "o"),
        "--action",
        "item",
        "--reward",
        "click",
        "--pscore",
        "p",
    ]
    assert main(argv) == 0  # identical rows (-7, 1) of a log without ids are kept
    d = read_logs(tmp_path / "o")
    assert d.context_dim == 0 and d.n_rows == 5
    assert d.metadata["action_map"] == [-7, 12, 10**9]
    assert d.action.tolist() == [0, 1, 2, 0, 1]
    assert (
        main(
            [
                "train",
                "bandit",
                str(tmp_path / "o"),
                "--learner",
                "ucb1",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )


def test_import_encoding(tmp_path, capsys):
    (tmp_path / "l.csv").write_bytes(
        "item,click,p,city\n1,1,0.5,Zürich\n2,0,0.5,Genève\n".encode("latin-1")
    )
    argv = [
        "import",
        "csv",
        str(tmp_path / "l.csv"),
        "--action",
        "item",
        "--reward",
        "click",
        "--pscore",
        "p",
        "--context",
        "city",
    ]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'l.csv'}: cannot decode byte" in err and "use --encoding latin-1" in err
    assert main([*argv, "--out", str(tmp_path / "b"), "--encoding", "latin-1"]) == 0
    assert read_logs(tmp_path / "b").metadata["context_columns"] == ["city=Genève", "city=Zürich"]


def test_reimport_offrec_parquet(good, tmp_path, capsys):
    assert (
        main(["import", "parquet", str(good / "part-00000.parquet"), "--out", str(tmp_path / "a")])
        == 0
    )
    a, g = read_logs(tmp_path / "a"), read_logs(good)
    np.testing.assert_array_equal(a.context, g.context)
    np.testing.assert_array_equal(a.pscore, g.pscore)
    assert (
        main(["import", "parquet", str(good), "--out", str(tmp_path / "b"), "--action", "x"]) == 2
    )
    assert "is a log offrec wrote" in capsys.readouterr().err


def test_gymnasium_env_by_module_name_without_importing_offrec(tmp_path):
    code = (
        "import sys, gymnasium as gym\n"
        "env = gym.make('offrec.sim:offrec/Recommender-v0')\n"
        "from gymnasium.utils.env_checker import check_env\n"
        "check_env(env.unwrapped)\n"
        "print(env.unwrapped.world.config.horizon)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[-1]) > 1


def test_absurd_network_width_fails_before_allocating(tmp_path, capsys):
    log = tmp_path / "s"
    assert (
        main(
            [
                "-q",
                "simulate",
                "--out",
                str(log),
                "--n-sessions",
                "20",
                "--horizon",
                "3",
                "--n-items",
                "10",
            ]
        )
        == 0
    )
    argv = [
        "train",
        "rl",
        str(log),
        "--param",
        "hidden_units=[10000000, 10000000]",
        "--out",
        str(tmp_path / "m"),
    ]
    assert main(argv) == 2
    assert (
        "hidden_units=[10000000, 10000000] is too large: the Q-network would need about"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "m").exists()
