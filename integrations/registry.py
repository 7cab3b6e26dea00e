"""Connector type → implementation. A new source or sink registers itself here."""

from __future__ import annotations

from typing import Any

from integrations.config import FileSourceConfig, ParquetSinkConfig, SqlSourceConfig, TableSinkConfig
from integrations.sources.postgres_cdc_config import PostgresCdcConfig


def source_class(config: Any) -> type:
    """The Source class for a source connector config."""
    if isinstance(config, SqlSourceConfig):
        from integrations.sources.sql import SqlSource

        return SqlSource
    if isinstance(config, FileSourceConfig):
        from integrations.sources.files import FileSource

        return FileSource
    if isinstance(config, PostgresCdcConfig):
        from integrations.sources.postgres_cdc import PostgresCdcSource

        return PostgresCdcSource
    raise TypeError(f"{type(config).__name__} is not a source connector")


def sink_class(config: Any) -> type:
    """The Sink class for a sink connector config."""
    if isinstance(config, ParquetSinkConfig):
        from integrations.sinks.parquet import ParquetSink

        return ParquetSink
    if isinstance(config, TableSinkConfig):
        from integrations.sinks.table import TableSink

        return TableSink
    raise TypeError(f"{type(config).__name__} is not a sink connector")


def is_source(config: Any) -> bool:
    """True for source connectors (into Kafka)."""
    return isinstance(config, SqlSourceConfig | FileSourceConfig | PostgresCdcConfig)
