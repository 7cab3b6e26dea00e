"""Asset keys for the lineage ``source table or folder → Kafka topic → dataset or table``."""

import re

import dagster as dg
import sqlalchemy as sa

from integrations.config import (
    FileSourceConfig,
    ParquetSinkConfig,
    SqlSourceConfig,
    TableSinkConfig,
    resolve_env,
)


def clean(name: str) -> str:
    """A name usable as a Dagster key part: letters, digits and underscores."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def database_label(url: str, fallback: str) -> str:
    """A secret-free label for a database: ``<dialect>_<database name>``."""
    try:
        u = sa.make_url(resolve_env(url))
        db = (u.database or "db").rsplit("/", 1)[-1].removesuffix(".db").removesuffix(".sqlite").removesuffix(".duckdb")
        return clean(f"{u.get_backend_name()}_{db}")
    except Exception:  # noqa: BLE001 - an unresolvable URL still gets a stable label
        return clean(fallback)


def table_key(config: SqlSourceConfig, table: str) -> dg.AssetKey:
    """The external source table (or custom query)."""
    label = database_label(config.connection_url, config.name)
    if config.query:
        return dg.AssetKey(["source", label, clean(f"{config.name}_query")])
    return dg.AssetKey(["source", label, *[clean(p) for p in table.split(".")]])


def folder_key(config: FileSourceConfig) -> dg.AssetKey:
    """The external spooling folder of a file source."""
    return dg.AssetKey(["files", clean(config.name)])


def topic_key(topic: str) -> dg.AssetKey:
    """A Kafka topic."""
    return dg.AssetKey(["kafka", clean(topic)])


def dataset_key(config: ParquetSinkConfig, topic: str) -> dg.AssetKey:
    """The Parquet dataset a sink writes for one topic."""
    return dg.AssetKey(["parquet", clean(config.name), clean(topic)])


def target_table_key(config: TableSinkConfig, topic: str) -> dg.AssetKey:
    """The warehouse table a table sink writes for one topic."""
    table = config.table_name_format.replace("${topic}", topic)
    parts = [config.db_schema, table] if config.db_schema else [table]
    return dg.AssetKey(["warehouse", database_label(config.connection_url, config.name), *[clean(p) for p in parts]])


def group_of(config: object) -> str:
    """The asset group of a connector."""
    return clean(getattr(config, "group_name", None) or config.name)
