"""SQL over logs with in-process DuckDB: the dataset is the view ``logs``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from offrec.core.errors import InputError
from offrec.core.fmt import format_text_table
from offrec.logs.reader import log_files, read_metadata
from offrec.logs.scan import check_log, log_problems


def connect(path: str | Path, *, external_access: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the view ``logs`` over the log at ``path``.

    When the log carries item topics (simulated logs), the table ``items(action, topic)``
    is there too. Unless ``external_access``, the connection may read only the log's own
    files (``allowed_paths`` + ``enable_external_access = false``) and its configuration
    is locked (``lock_configuration``): SQL cannot read or write other files, attach
    databases or load extensions. With ``external_access`` the SQL runs with the
    caller's full rights.
    """
    paths = [str(f.resolve()) for f in log_files(path)]
    files = ", ".join("'" + f.replace("'", "''") + "'" for f in paths)
    # bounded memory: DuckDB streams the scans; its hash tables stay under 1 GB
    con = duckdb.connect(":memory:", config={"memory_limit": "1GB", "threads": 2})
    try:
        _setup(con, path, paths, files, external_access)
    except duckdb.Error as exc:
        con.close()
        raise InputError(f"cannot open log {path}: {str(exc).splitlines()[0]}") from None
    return con


def _setup(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    paths: list[str],
    files: str,
    external_access: bool,
) -> None:
    if not external_access:
        con.execute("SET allowed_paths = $1", [paths])
        con.execute("SET enable_external_access = false")
    con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet([{files}])")
    meta = read_metadata(path)
    if "item_topics" in meta and "topics" in meta:
        topics = meta["topics"]
        items = pd.DataFrame(
            {
                "action": np.arange(len(meta["item_topics"]), dtype=np.int32),
                "topic": [topics[t] for t in meta["item_topics"]],
            }
        )
        con.register("items_df", items)
        con.execute("CREATE TABLE items AS SELECT * FROM items_df")
        con.unregister("items_df")
    if not external_access:
        con.execute("SET lock_configuration = true")


def query(
    path: str | Path, sql: str, *, external_access: bool = False, validate: bool = True
) -> pd.DataFrame:
    """Run ``sql`` (full DuckDB SQL) against the view ``logs`` and return a DataFrame.

    The log is first checked like :func:`~offrec.logs.reader.read_logs` does (``validate``);
    a bad file or value is an ``InputError`` naming it. File access is locked unless
    ``external_access`` (see :func:`connect`). Empty SQL, a syntax error or a statement
    that returns no result is an ``InputError``.

    Not run as a doctest: it needs a log folder on disk (``tests/logs`` runs it).

    >>> query("data/demo", "SELECT count(*) AS n FROM logs")  # doctest: +SKIP
    """
    if not isinstance(sql, str) or not sql.strip().rstrip(";").strip():
        raise InputError("sql must be a non-empty SQL statement; got " + repr(sql))
    if validate:
        problems = log_problems(path)
        if problems:
            more = (
                f" (+{len(problems) - 1} more problem(s); see `offrec summary`)"
                if len(problems) > 1
                else ""
            )
            raise InputError(f"invalid log {path}: {problems[0]}{more}")
    con = connect(path, external_access=external_access)
    try:
        result = con.execute(sql)
        if result.description is None:
            raise InputError(
                "the SQL statement returned no result set; query runs SELECT-like statements"
            )
        return result.df()
    except duckdb.Error as exc:
        raise InputError(f"SQL error: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


@dataclass
class LogSummary:
    """Tables describing a log (all pandas DataFrames)."""

    overall: pd.DataFrame | None
    by_step: pd.DataFrame | None
    by_topic: pd.DataFrame | None
    problems: list[str] = field(default_factory=list)
    value_label: str = "ctr"

    def to_text(self) -> str:
        """The three tables for a terminal: counts as integers, rates and propensities
        with 4 significant digits (``1.26e-05``, not ``0.0000``), a legend, then the
        problems :func:`~offrec.logs.read_logs` would raise (or only those, when the log
        cannot be read)."""
        if self.overall is None or self.by_step is None:
            return "\n".join(
                ["problems (the log cannot be read)", *[f"- {p}" for p in self.problems]]
            )
        row = self.overall.iloc[0]
        overall = [[str(k), row[k]] for k in self.overall.columns]
        parts = ["overall", _table(["", ""], overall, header=False)]
        if self.by_topic is not None:
            parts += ["", "by topic", _table(list(self.by_topic.columns), self.by_topic)]
        parts += ["", "by step", _table(list(self.by_step.columns), self.by_step)]
        legend = [f"  {k}: {v}" for k, v in SUMMARY_LEGEND.items() if k in self.overall.columns]
        problems = [f"- {p}" for p in self.problems] or ["none: the log passes every check"]
        return "\n".join([*parts, "", "legend", *legend, "", "problems", *problems])


SUMMARY_LEGEND: dict[str, str] = {
    "ctr": "mean reward per logged decision (click-through rate)",
    "mean_reward": "mean reward per logged decision (a continuous reward: not a click rate)",
    "clicks_per_session": "total reward / number of sessions",
    "pscore_min": "smallest logging propensity (a tiny one means a huge importance weight)",
    "pscore_max": "largest logging propensity",
    "ess_uniform": "Kish effective sample size (sum w)^2 / sum w^2 of the weights "
    "w = (1/K)/pscore of a uniform-random target: how many rows an IPS estimate of it is worth",
    "ess_fraction": "ess_uniform / rows",
}
"""What the less obvious columns of the overall summary mean (printed under it)."""

_COUNT_COLUMNS = ("rows", "sessions", "distinct_actions", "step")


def _table(columns: list[str], rows: Any, *, header: bool = True) -> str:
    if isinstance(rows, pd.DataFrame):
        rows = rows.itertuples(index=False)
    cells = [[_as_count(columns[j] if header else r[0], v) for j, v in enumerate(r)] for r in rows]
    text = format_text_table(columns, cells, integer_columns=_COUNT_COLUMNS)
    return text.split("\n", 1)[1] if not header else text


def _as_count(column: str, value: Any) -> Any:
    """Counts that arrive as floats (a transposed or SQL-summed column) become ints."""
    if column in _COUNT_COLUMNS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value.item() if isinstance(value, np.generic) else value


def summary(path: str | Path) -> LogSummary:
    """Rows, sessions (counted as the rows with step 0: every session starts there, which
    keeps the count a streaming sum instead of a distinct-count over session ids), CTR
    overall / by topic / by step, pscore range, and effective
    sample size hints for a log, with every problem :func:`read_logs` would raise in
    ``problems`` (a log that cannot be read at all has only ``problems``). The reward
    column is called ``ctr`` only for binary rewards (``mean_reward`` otherwise).

    ``ess_uniform`` is Kish's effective sample size ``(sum w)^2 / sum w^2`` of the
    importance weights ``w = (1/K) / pscore`` for a uniform-random target over K items:
    how many logged rows an IPS estimate of such a target is really worth.
    """
    readable, problems = check_log(path)
    if not readable:
        return LogSummary(None, None, None, problems)
    con = connect(path)
    meta = read_metadata(path)
    binary = (meta.get("reward_domain") or {"kind": "binary"}).get("kind") == "binary"
    label = "ctr" if binary else "mean_reward"
    k = int(meta.get("n_actions", 0))
    if not k:
        (k,) = con.execute("SELECT max(action) + 1 FROM logs").fetchone()  # type: ignore[misc]
    try:
        overall = con.execute(
            f"""
            SELECT count(*) AS rows, count(*) FILTER (WHERE step = 0) AS sessions,
                   avg(reward) AS {label},
                   sum(reward) / count(*) FILTER (WHERE step = 0) AS clicks_per_session,
                   min(pscore) AS pscore_min, max(pscore) AS pscore_max,
                   count(DISTINCT action) AS distinct_actions,
                   power(sum(1.0 / ({k} * pscore)), 2) / sum(power(1.0 / ({k} * pscore), 2)) AS ess_uniform
            FROM logs
            """
        ).df()
        by_step = con.execute(
            f"SELECT step, count(*) AS rows, avg(reward) AS {label} FROM logs GROUP BY step ORDER BY step"
        ).df()
        by_topic = None
        if "item_topics" in meta:
            by_topic = con.execute(
                f"""
                SELECT i.topic, count(*) AS rows, avg(l.reward) AS {label},
                       count(*) * 1.0 / (SELECT count(*) FROM logs) AS share
                FROM logs l JOIN items i USING (action) GROUP BY i.topic ORDER BY rows DESC
                """
            ).df()
    finally:
        con.close()
    overall["ess_fraction"] = overall["ess_uniform"] / overall["rows"]
    return LogSummary(overall, by_step, by_topic, problems, label)
