"""Logged datasets: Parquet schema, streamed writer, validated reader, DuckDB queries."""

from offrec.logs.data import LoggedData
from offrec.logs.query import LogSummary, connect, query, summary
from offrec.logs.reader import read_logs, read_metadata, validate_logged_data
from offrec.logs.schema import SCHEMA_VERSION, log_schema
from offrec.logs.writer import CollectSummary, collect

__all__ = [
    "SCHEMA_VERSION", "CollectSummary", "LogSummary", "LoggedData", "collect", "connect",
    "log_schema", "query", "read_logs", "read_metadata", "summary", "validate_logged_data",
]  # fmt: skip
