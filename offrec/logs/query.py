"""SQL over logs with in-process DuckDB: the dataset is the view ``logs``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from offrec.core.errors import InputError
from offrec.core.fmt import format_text_table
from offrec.logs.reader import log_files, read_metadata


def connect(path: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the view ``logs`` over the log at ``path``.

    When the log carries item topics (simulated logs), the table ``items(action, topic)``
    is there too.
    """
    files = ", ".join("'" + str(f).replace("'", "''") + "'" for f in log_files(path))
    con = duckdb.connect(":memory:")
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
    return con


def query(path: str | Path, sql: str) -> pd.DataFrame:
    """Run ``sql`` against the view ``logs`` and return a DataFrame.

    Not run as a doctest: it needs a log folder on disk (``tests/logs`` runs it).

    >>> query("data/demo", "SELECT count(*) AS n FROM logs")  # doctest: +SKIP
    """
    con = connect(path)
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise InputError(f"SQL error: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()


@dataclass
class LogSummary:
    """Tables describing a log (all pandas DataFrames)."""

    overall: pd.DataFrame
    by_step: pd.DataFrame
    by_topic: pd.DataFrame | None

    def to_text(self) -> str:
        """The three tables for a terminal: counts as integers, rates and propensities
        with 4 significant digits (``1.26e-05``, not ``0.0000``), then a legend."""
        row = self.overall.iloc[0]
        overall = [[str(k), row[k]] for k in self.overall.columns]
        parts = ["overall", _table(["", ""], overall, header=False)]
        if self.by_topic is not None:
            parts += ["", "by topic", _table(list(self.by_topic.columns), self.by_topic)]
        parts += ["", "by step", _table(list(self.by_step.columns), self.by_step)]
        legend = [f"  {k}: {v}" for k, v in SUMMARY_LEGEND.items() if k in self.overall.columns]
        return "\n".join([*parts, "", "legend", *legend])


SUMMARY_LEGEND: dict[str, str] = {
    "ctr": "mean reward per logged decision (click-through rate)",
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
    """Rows, sessions, CTR overall / by topic / by step, pscore range, and effective
    sample size hints for a log.

    ``ess_uniform`` is Kish's effective sample size ``(sum w)^2 / sum w^2`` of the
    importance weights ``w = (1/K) / pscore`` for a uniform-random target over K items:
    how many logged rows an IPS estimate of such a target is really worth.
    """
    con = connect(path)
    meta = read_metadata(path)
    k = int(meta.get("n_actions", 0))
    if not k:
        (k,) = con.execute("SELECT max(action) + 1 FROM logs").fetchone()  # type: ignore[misc]
    try:
        overall = con.execute(
            f"""
            SELECT count(*) AS rows, count(DISTINCT session_id) AS sessions,
                   avg(reward) AS ctr, sum(reward) / count(DISTINCT session_id) AS clicks_per_session,
                   min(pscore) AS pscore_min, max(pscore) AS pscore_max,
                   count(DISTINCT action) AS distinct_actions,
                   power(sum(1.0 / ({k} * pscore)), 2) / sum(power(1.0 / ({k} * pscore), 2)) AS ess_uniform
            FROM logs
            """
        ).df()
        by_step = con.execute(
            "SELECT step, count(*) AS rows, avg(reward) AS ctr FROM logs GROUP BY step ORDER BY step"
        ).df()
        by_topic = None
        if "item_topics" in meta:
            by_topic = con.execute(
                """
                SELECT i.topic, count(*) AS rows, avg(l.reward) AS ctr,
                       count(*) * 1.0 / (SELECT count(*) FROM logs) AS share
                FROM logs l JOIN items i USING (action) GROUP BY i.topic ORDER BY rows DESC
                """
            ).df()
    finally:
        con.close()
    overall["ess_fraction"] = overall["ess_uniform"] / overall["rows"]
    return LogSummary(overall=overall, by_step=by_step, by_topic=by_topic)
