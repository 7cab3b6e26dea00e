"""Asset keys for the lineage ``source table → Kafka topic → dataset``."""

from __future__ import annotations

import re

import dagster as dg
import sqlalchemy as sa

from integrations.config import ParquetSinkConfig, SqlSourceConfig, resolve_env


def clean(name: str) -> str:
    """A name usable as a Dagster key part: letters, digits and underscores."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def database_label(config: SqlSourceConfig) -> str:
    """A secret-free label for the source database: ``<dialect>_<database name>``."""
    try:
        url = sa.make_url(resolve_env(config.connection_url))
        db = (url.database or "db").rsplit("/", 1)[-1].removesuffix(".db").removesuffix(".sqlite")
        return clean(f"{url.get_backend_name()}_{db}")
    except Exception:  # noqa: BLE001 - an unresolvable URL still gets a stable label
        return clean(config.name)


def table_key(config: SqlSourceConfig, table: str) -> dg.AssetKey:
    """The external source table (or custom query)."""
    if config.query:
        return dg.AssetKey(["source", database_label(config), clean(f"{config.name}_query")])
    return dg.AssetKey(["source", database_label(config), *[clean(p) for p in table.split(".")]])


def topic_key(topic: str) -> dg.AssetKey:
    """A Kafka topic."""
    return dg.AssetKey(["kafka", clean(topic)])


def dataset_key(config: ParquetSinkConfig, topic: str) -> dg.AssetKey:
    """The Parquet dataset a sink writes for one topic."""
    return dg.AssetKey(["parquet", clean(config.name), clean(topic)])


def group_of(config: SqlSourceConfig | ParquetSinkConfig) -> str:
    """The asset group of a connector."""
    return clean(config.group_name or config.name)
