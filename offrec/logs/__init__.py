"""Logged datasets: Parquet schema, streamed writer, validated reader, DuckDB queries."""

from typing import TYPE_CHECKING, Any

from offrec.logs.data import LoggedData
from offrec.logs.items import ItemMap
from offrec.logs.reader import read_logs, read_metadata, validate_logged_data
from offrec.logs.schema import SCHEMA_VERSION, log_schema
from offrec.logs.writer import CollectSummary, collect, write_log

if TYPE_CHECKING:
    from offrec.logs.query import LogSummary, connect, query, summary

_QUERY_NAMES = ("LogSummary", "connect", "query", "summary")


def __getattr__(name: str) -> Any:
    """The DuckDB query helpers load on first use: DuckDB and pandas cost a third of a
    second of start-up that writing or reading a log does not need."""
    if name in _QUERY_NAMES:
        import importlib

        module = importlib.import_module("offrec.logs.query")
        # bind the functions over the submodule attribute the import just set (as the
        # eager ``from offrec.logs.query import query`` did)
        globals().update({n: getattr(module, n) for n in _QUERY_NAMES})
        return globals()[name]
    raise AttributeError(f"module 'offrec.logs' has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "CollectSummary",
    "ItemMap",
    "LogSummary",
    "LoggedData",
    "collect",
    "connect",
    "log_schema",
    "query",
    "read_logs",
    "read_metadata",
    "summary",
    "validate_logged_data",
    "write_log",
]
