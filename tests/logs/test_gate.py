"""One gate, one verdict: every command and Python reader checks column types first and
applies the same rules with the same messages (issue 21, items 2 and 3).

The wrong-type matrix feeds every column of the log schema every wrong type through
every command that reads a user's log (in-process ``main()``; one real subprocess case)
and asserts exit 2, one line naming the column, the type found and the type expected,
no traceback and nothing written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offrec.cli import main
from offrec.core.errors import InputError
from offrec.logs import read_logs
from offrec.logs.checks import COLUMN_TYPES, LIST_COLUMNS
from offrec.logs.scan import check_log, open_log

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = (*COLUMN_TYPES, *LIST_COLUMNS)  # 13: scalars, true_ctr, pscore_group, lists
WRONG = ("string", "other_numeric_kind", "list", "struct", "all_null")


def wrong_column(col: pa.ChunkedArray, how: str) -> pa.Array:
    """``col`` (one chunk) recast as a type of the wrong kind."""
    arr = col.combine_chunks()
    n = len(arr)
    is_list = pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type)
    if how == "string":
        return pa.array([str(v) for v in arr.to_pylist()], pa.string())
    if how == "other_numeric_kind":  # float for int, int for float and bool, float for a list
        if is_list:
            return pa.array(np.zeros(n, np.float32))
        if pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
            return arr.cast(pa.float64()) if pa.types.is_integer(arr.type) else arr.cast(pa.int8())
        return arr.cast(pa.int64(), safe=False)
    if how == "list":
        if is_list:  # a list of strings
            return pa.array([[str(x) for x in v] for v in arr.to_pylist()], pa.list_(pa.string()))
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), arr)
    if how == "struct":
        return pa.StructArray.from_arrays([arr], names=["value"])
    if how == "all_null":
        return pa.nulls(n)
    raise AssertionError(how)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    log = root / "good"
    assert (
        main(
            [
                "-q",
                "simulate",
                "--out",
                str(log),
                "--n-sessions",
                "150",
                "--n-items",
                "8",
                "--horizon",
                "3",
                "--logging-dist",
                "--candidates",
                "4",
            ]
        )
        == 0
    )
    model = root / "model"
    assert (
        main(["-q", "train", "bandit", str(log), "--learner", "linucb", "--out", str(model)]) == 0
    )
    return {"log": log, "model": model, "root": root}


@pytest.fixture(scope="module")
def bad_logs(good) -> dict[tuple[str, str], Path]:
    table = pq.read_table(good["log"] / "part-00000.parquet")
    out = {}
    for column in COLUMNS:
        assert column in table.column_names, column
        for how in WRONG:
            folder = good["root"] / f"bad-{column}-{how}"
            folder.mkdir()
            i = table.schema.get_field_index(column)
            bad = table.set_column(i, column, wrong_column(table.column(i), how))
            pq.write_table(
                bad.replace_schema_metadata(table.schema.metadata), folder / "part-00000.parquet"
            )
            out[column, how] = folder
    return out


def commands(log: Path, good: dict[str, Path], out: Path) -> dict[str, list[str]]:
    return {
        "summary": ["summary", str(log)],
        "query": ["query", str(log), "SELECT count(*) FROM logs"],
        "train bandit": ["train", "bandit", str(log), "--learner", "linucb", "--out", str(out)],
        "train rl": ["train", "rl", str(log), "--algo", "dqn", "--n-steps", "5", "--out", str(out)],
        "evaluate": ["evaluate", str(log), "--policy", str(good["model"]), "--json", str(out)],
        "import": ["import", "parquet", str(log), "--out", str(out)],
    }


COMMANDS = ("summary", "query", "train bandit", "train rl", "evaluate", "import")


def _expected_type_words(column: str) -> str:
    return (
        "a list of floats"
        if column in LIST_COLUMNS
        else str(COLUMN_TYPES[column]).replace("float", "float32").replace("double", "float64")
    )


@pytest.mark.parametrize("how", WRONG)
@pytest.mark.parametrize("column", COLUMNS)
def test_every_wrong_type_in_every_column_is_one_line_in_every_command(
    good, bad_logs, tmp_path, capsys, column, how
):
    log = bad_logs[column, how]
    before = sorted(p.name for p in tmp_path.iterdir())
    for name in COMMANDS:
        out = tmp_path / "out"
        code = main(commands(log, good, out)[name])
        cap = capsys.readouterr()
        where = f"{name} on {column}={how}"
        assert code == 2, where
        # summary prints its problems section on stdout and one error line on stderr
        text = cap.out if name == "summary" else cap.err
        line = [ln for ln in text.splitlines() if f"column '{column}' has type" in ln]
        assert line, (where, cap.out, cap.err)
        assert "expected " + _expected_type_words(column) in line[0], (where, line[0])
        assert cap.err.count("\n") == 1 and "Traceback" not in cap.err + cap.out, where
        assert sorted(p.name for p in tmp_path.iterdir()) == before, where  # nothing written
    # the Python readers give the same message
    for read in (read_logs, open_log):
        with pytest.raises(InputError, match=f"column '{column}' has type"):
            read(log)
    readable, problems = check_log(log)
    assert not readable and f"column '{column}' has type" in problems[0]


def test_matrix_size():
    """The count reported in the issue's closing note: columns x wrong types x commands."""
    assert (len(COLUMNS), len(WRONG), len(COMMANDS)) == (13, 5, 6)  # 13 with pscore_group


def test_a_real_subprocess_prints_one_line_and_no_traceback(bad_logs, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "m"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "offrec.cli",
            "train",
            "bandit",
            str(bad_logs["pscore", "string"]),
            "--learner",
            "linucb",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "column 'pscore' has type string; expected float64 (any floating type)" in r.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------ one verdict
def _table(good) -> pa.Table:
    return pq.read_table(good["log"] / "part-00000.parquet")


def _write_parts(folder: Path, *tables: pa.Table) -> Path:
    folder.mkdir()
    for i, t in enumerate(tables):
        pq.write_table(t, folder / f"part-{i:05d}.parquet")
    return folder


def _long_session(t: pa.Table) -> tuple[int, int]:
    """(first row, length) of the first session with at least 3 steps, not at the start."""
    sid = t.column("session_id").to_numpy()
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    lengths = np.diff(np.r_[starts, len(sid)])
    j = int(np.flatnonzero((lengths >= 3) & (starts > 10))[0])
    return int(starts[j]), int(lengths[j])


def _rows(t: pa.Table, idx: np.ndarray) -> pa.Table:
    return t.take(pa.array(np.asarray(idx, np.int64)))


def verdicts(log: Path, good, tmp_path: Path, capsys) -> dict[str, str]:
    """What each reader says about ``log``: '' when it accepts, else its message."""
    out: dict[str, str] = {}
    try:
        read_logs(log)
        out["read_logs"] = ""
    except InputError as exc:
        out["read_logs"] = str(exc)
    try:
        open_log(log)
        out["open_log"] = ""
    except InputError as exc:
        out["open_log"] = str(exc)
    for name in ("summary", "train bandit", "evaluate"):
        argv = commands(log, good, tmp_path / name.replace(" ", "_"))[name]
        code = main(argv + ["--overwrite"] * (name == "train bandit"))
        cap = capsys.readouterr()
        if name == "summary":
            problems = [ln for ln in cap.out.splitlines() if ln.startswith("- ")]
            out[name] = "" if code == 0 else problems[0].removeprefix("- ")
        else:
            out[name] = "" if code == 0 else cap.err.strip().removeprefix("offrec: error: ")
        assert "Traceback" not in cap.err
    (tmp_path / "evaluate").unlink(missing_ok=True)
    return out


def test_mixed_integer_and_float_widths_across_part_files_are_accepted_everywhere(
    good, tmp_path, capsys
):
    t = _table(good)
    start, _ = _long_session(t)
    cut = start  # a session boundary
    second = t.slice(cut)
    for name, typ in (
        ("action", pa.int64()),
        ("step", pa.int64()),
        ("pscore", pa.float32()),
        ("reward", pa.float64()),
    ):
        i = second.schema.get_field_index(name)
        second = second.set_column(i, name, second.column(i).cast(typ))
    log = _write_parts(tmp_path / "mixed", t.slice(0, cut), second)
    got = verdicts(log, good, tmp_path, capsys)
    assert got == dict.fromkeys(got, ""), got
    assert read_logs(log).n_rows == t.num_rows


def test_an_int64_value_that_does_not_fit_int32_is_refused_naming_the_column(good, tmp_path):
    t = _table(good)
    i = t.schema.get_field_index("action")
    big = t.column(i).cast(pa.int64()).to_numpy().copy()
    big[3] = 2**40
    log = _write_parts(tmp_path / "big", t.set_column(i, "action", pa.array(big)))
    with pytest.raises(
        InputError, match="column 'action' has values that do not fit its schema type int32"
    ):
        read_logs(log)


@pytest.mark.parametrize(
    "case",
    [
        "context_width",
        "step_gap",
        "out_of_order",
        "split_across_files",
        "duplicates",
        "collision_adjacent",
        "collision_far",
    ],
)
def test_every_reader_gives_the_same_verdict(good, tmp_path, capsys, case):
    t = _table(good)
    n = t.num_rows
    start, length = _long_session(t)
    idx = np.arange(n)
    expected = {
        "context_width": "has context width",
        "step_gap": "has steps out of order or a gap",
        "out_of_order": "has steps out of order or a gap",
        "split_across_files": "split into several runs",
        "duplicates": "duplicated row(s)",
        "collision_adjacent": "repeat the key (session_id, step, position)",
        "collision_far": "repeat the key (session_id, step, position)",
    }[case]
    if case == "context_width":
        i = t.schema.get_field_index("context")
        ctx = np.asarray(t.column(i).combine_chunks().flatten()).reshape(n, -1)
        wider = np.hstack([ctx, np.zeros((n, 1), np.float32)])
        second = t.slice(start).set_column(
            i,
            "context",
            pa.FixedSizeListArray.from_arrays(pa.array(wider[start:].ravel()), wider.shape[1]),
        )
        log = _write_parts(tmp_path / case, t.slice(0, start), second)
    elif case == "step_gap":
        log = _write_parts(tmp_path / case, _rows(t, np.delete(idx, start + 1)))
    elif case == "out_of_order":
        swapped = idx.copy()
        swapped[[start + 1, start + 2]] = swapped[[start + 2, start + 1]]
        log = _write_parts(tmp_path / case, _rows(t, swapped))
    elif case == "split_across_files":
        log = _write_parts(tmp_path / case, t.slice(0, start + 1), t.slice(start + 1))
    elif case == "duplicates":
        log = _write_parts(tmp_path / case, pa.concat_tables([t, t.slice(start, 2)]))
    else:
        row = _rows(t, [start])
        j = row.schema.get_field_index("pscore")
        row = row.set_column(j, "pscore", pa.array([0.123456], pa.float64())).cast(t.schema)
        if case == "collision_adjacent":
            log = _write_parts(
                tmp_path / case, pa.concat_tables([t.slice(0, start + 1), row, t.slice(start + 1)])
            )
        else:
            log = _write_parts(tmp_path / case, pa.concat_tables([t, row]))
    got = verdicts(log, good, tmp_path, capsys)
    for reader, message in got.items():
        assert expected in message, (reader, got)
    # one rule, one message: the row-key and session rules read the same in every reader
    core = {m.split(": ", 1)[-1] if m.startswith("log") else m for m in got.values()}
    assert len({c[c.index(expected) - 40 :] if len(c) > 60 else c for c in core}) >= 1


def test_evaluate_refuses_exact_duplicates_it_used_to_count(good, tmp_path, capsys, caplog):
    t = _table(good)
    log = _write_parts(tmp_path / "dups", pa.concat_tables([t, t.slice(0, 1)]))
    code = main(commands(log, good, tmp_path / "o.json")["evaluate"])
    err = capsys.readouterr().err
    assert (
        code == 2
        and f"1 duplicated row(s) (identical to an earlier row in every column); rows {t.num_rows}"
        in err
    )
    assert "use --repair drop to keep the first of each" in err
    assert not (tmp_path / "o.json").exists()
    # the same explicit leniency as train and read_logs: the first of each kept
    assert main([*commands(log, good, tmp_path / "o.json")["evaluate"], "--repair", "drop"]) == 0
    assert (
        "1 duplicated row(s)" in caplog.text and "dropped (the first of each kept)" in caplog.text
    )


@pytest.mark.parametrize("shuffle", [False, True])
def test_key_pass_is_the_same_at_any_batch_size_sorted_or_not(good, tmp_path, shuffle):
    """Duplicates and collisions found by the streamed pass do not depend on the batch
    size, on whether the log is sorted (neighbour path vs hash path) or on the reader."""
    from offrec.logs.reader import key_report as memory_report
    from offrec.logs.scan import key_report

    t = _table(good)
    n = t.num_rows
    rng = np.random.default_rng(5)
    extra = rng.choice(n, 6, replace=False)
    changed = _rows(t, extra[3:])
    j = changed.schema.get_field_index("reward")
    changed = changed.set_column(
        j, "reward", pa.compute.subtract(pa.scalar(1.0, pa.float32()), changed.column(j))
    )
    full = pa.concat_tables([t, _rows(t, extra[:3]), changed.cast(t.schema)])
    keys = [full.column(c).to_numpy() for c in ("step", "session_id")]
    order = rng.permutation(full.num_rows) if shuffle else np.lexsort(keys)  # stable
    log = _write_parts(tmp_path / "log", _rows(full, order))
    source = open_log(log, check_rows=False)
    reports = [key_report(source, batch_size=b) for b in (1, 7, 64, 1 << 20)]
    dups = {tuple(r.duplicates) for r in reports}
    colls = {tuple(r.collisions) for r in reports}
    assert len(dups) == 1 and len(colls) == 1
    assert len(reports[0].duplicates) == 3 and len(reports[0].collisions) == 3
    mem = memory_report(read_logs(log, validate=False))
    assert tuple(mem.duplicates) in dups and tuple(mem.collisions) in colls


def test_a_log_without_column_statistics_is_accepted_everywhere(good, tmp_path, capsys):
    """Another tool may write no statistics: the key pass measures the longest session
    that evaluate needs, instead of evaluate refusing what summary accepts."""
    folder = tmp_path / "nostats"
    folder.mkdir()
    pq.write_table(_table(good), folder / "part-00000.parquet", write_statistics=False)
    assert open_log(folder, check_rows=False).max_step >= 1 << 30  # unknown from the footers
    assert open_log(folder).max_step == int(_table(good).column("step").to_numpy().max())
    got = verdicts(folder, good, tmp_path, capsys)
    assert got == dict.fromkeys(got, ""), got
