"""Logged datasets: Parquet schema, streamed writer, validated reader, DuckDB queries."""

from offrec.logs.data import LoggedData

__all__ = ["LoggedData"]
