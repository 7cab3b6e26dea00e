"""Helpers shared by the Parquet and table sink tests: produce exact records, read files back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from integrations.config import TableSinkConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.sinks.table import open_backend
from tests.helpers import produce_all


def produce(kafka: KafkaSettings, topic: str, records: list[tuple[int, Any, Any, int | None]]) -> None:
    """Produce ``(partition, key, value, timestamp_ms)``; key/value None is a null key / a tombstone."""
    produce_all(kafka, topic, ({"partition": part, "key": None if key is None else orjson.dumps(key),
                                "value": None if value is None else orjson.dumps(value),
                                **({"timestamp": ts} if ts is not None else {})}
                               for part, key, value, ts in records), **{"linger.ms": 5})


def file_rows(root: str, topic: str, column: str = "id") -> dict[str, list[int]]:
    """``{relative file path: [values of column]}`` for every Parquet file of a topic."""
    
    base = Path(root) / topic
    return {str(f.relative_to(base)): pq.read_table(f).column(column).to_pylist()
            for f in sorted(base.rglob("*.parquet")) if not any(s.startswith(".") for s in f.relative_to(base).parts)}


def stored_offsets(cfg: TableSinkConfig) -> dict[tuple[str, int], int]:
    """The offsets a table sink keeps in its target database."""
    backend = open_backend(cfg)
    try:
        return backend.stored_offsets()
    finally:
        backend.close()
