"""Connector YAML of the chaos scenarios, as a user writes it (dicts dumped by ``Chaos.connector``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.chaos.harness import SCALE


def sql_source(name: str, url: str, table: str, prefix: str, exactly_once: bool = False,
               **extra: Any) -> dict[str, Any]:
    """A PostgreSQL table in incrementing mode into ``<prefix><table>`` (3 partitions)."""
    cfg: dict[str, Any] = {"name": name, "type": "sql_source", "connection_url": url, "mode": "incrementing",
                           "incrementing_column": "id", "tables": [table], "topic_prefix": prefix,
                           "topic_partitions": 3, "batch_max_rows": SCALE.batch}
    if exactly_once:
        cfg["exactly_once"] = True
    return {**cfg, **extra}


def parquet_sink(name: str, topic: str, lake: Path, **extra: Any) -> dict[str, Any]:
    """A Parquet dataset of ``topic`` under ``lake``, one file per ``SCALE.batch`` records and partition."""
    return {"name": name, "type": "parquet_sink", "topics": [topic], "path": str(lake), "flush_size": SCALE.batch,
            "value_schema": {"id": "int64", "v": "string"}, **extra}


def table_sink(name: str, topic: str, url: str, table: str, upsert: bool = False, **extra: Any) -> dict[str, Any]:
    """A PostgreSQL table sink: insert (no key) or upsert on the record key ``id``."""
    cfg: dict[str, Any] = {"name": name, "type": "table_sink", "topics": [topic], "connection_url": url,
                           "table_name_format": table, "auto_create": True, "batch_size": SCALE.batch}
    if upsert:
        cfg.update(insert_mode="upsert", pk_mode="record_key", pk_fields=["id"],
                   value_schema={"id": "int64", "n": "int64", "v": "string"})
    else:
        cfg.update(insert_mode="insert", value_schema={"id": "int64", "v": "string"})
    return {**cfg, **extra}
