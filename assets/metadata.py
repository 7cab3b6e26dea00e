"""Metadata: what materializations record from engine results, and what a data catalog shows about each
asset (Dagster's ``dagster/row_count``, ``dagster/column_schema``, ``dagster/table_name``,
``dagster/uri``, code references to the connector file, sizes). No secrets: connection URLs appear only
as :func:`integrations.catalog.safe_uri` renders them (password masked, no query string).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from assets.keys import SinkAsset
from integrations.catalog import human_size
from integrations.runtime.sink_runner import SinkResult
from integrations.runtime.source_runner import TopicStats

log = logging.getLogger("headrace.assets")


def source_metadata(stats: TopicStats, seconds: float, end_offsets: dict[int, int]) -> dict[str, Any]:
    """Metadata of a topic materialized by a source micro-batch."""
    return {
        "rows": dg.MetadataValue.int(stats.rows),
        "bytes": dg.MetadataValue.int(stats.bytes),
        "size": dg.MetadataValue.text(human_size(stats.bytes)),
        "topic": dg.MetadataValue.text(stats.topic),
        "source_offset_before": dg.MetadataValue.json(stats.offset_before or {}),
        "source_offset_after": dg.MetadataValue.json(stats.offset_after or {}),
        "topic_end_offsets": dg.MetadataValue.json({str(p): e for p, e in end_offsets.items()}),
        "duration_s": dg.MetadataValue.float(round(seconds, 3)),
    }


def sink_metadata(result: SinkResult, topics: str | Sequence[str], root: str,
                  target_name: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Metadata of one sink asset materialized by a sink micro-batch.

    ``topics`` are the asset's source topics. ``files`` lists every file written from them, whatever
    topic folder their records were routed to. With ``target_name`` (the sink routes), ``routed_targets``
    maps each routed topic's target (``target_name(topic)``: the topic, or its table) to its rows.
    ``offsets`` is ``{partition: [start, end]}`` for one source topic, ``{topic: {...}}`` for several."""
    topics = [topics] if isinstance(topics, str) else list(topics)
    files = list(dict.fromkeys(f for t in topics for f in result.files_from(t)))
    read = result.offsets()
    offsets = read.get(topics[0], {}) if len(topics) == 1 else {t: read.get(t, {}) for t in topics}
    written = result.stats.bytes if len(result.rows_per_topic) <= 1 else 0
    meta = {
        "rows": dg.MetadataValue.int(sum(result.rows_per_topic.get(t, 0) for t in topics)),
        "bytes": dg.MetadataValue.int(written),
        "size": dg.MetadataValue.text(human_size(written)),
        "files_written": dg.MetadataValue.int(len(files)),
        "files": dg.MetadataValue.json(files),
        "offsets": dg.MetadataValue.json(offsets),
        "lag": dg.MetadataValue.int(sum(result.lag_after.get(t, 0) for t in topics)),
        "tombstones_skipped": dg.MetadataValue.int(result.tombstones),
        "path": dg.MetadataValue.path(root),
        "duration_s": dg.MetadataValue.float(round(result.seconds, 3)),
    }
    if target_name is not None:
        targets: dict[str, int] = {}
        for t in topics:
            for routed, rows in result.rows_per_route.get(t, {}).items():
                name = target_name(routed)
                targets[name] = targets.get(name, 0) + rows
        meta["routed_targets"] = dg.MetadataValue.json(dict(sorted(targets.items())))
    return meta


# -- catalog metadata --------------------------------------------------------------------------------
def code_reference(path: Path, line: int = 1, label: str = "connector file") -> dg.CodeReferencesMetadataValue:
    """``dagster/code_references`` metadata pointing at a connector's YAML file (without Dagster's
    BetaWarning for these classes, which would otherwise repeat on every load)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.CodeReferencesMetadataValue(code_references=[
            dg.LocalFileCodeReference(file_path=str(path), line_number=line, label=label)])


def column_schema(columns: Mapping[str, str]) -> dg.TableSchemaMetadataValue:
    """``dagster/column_schema`` from ``{column: type}``."""
    return dg.MetadataValue.table_schema(dg.TableSchema(columns=[dg.TableColumn(n, str(t)) for n, t in
                                                                 columns.items()]))


def _table_name(url: str, table: str) -> str:
    """``<database>.<table>`` (the table as configured, possibly ``schema.table``); the bare table for
    file databases (SQLite, DuckDB), whose "database" is a path."""
    import sqlalchemy as sa

    from integrations.config import resolve_env

    try:
        u = sa.make_url(resolve_env(url))
        db = u.database
    except Exception:  # noqa: BLE001
        return table
    if not db or u.get_backend_name() in ("sqlite", "duckdb"):
        return table
    return f"{db}.{table}"


def spec_catalog(kind: str, config: object | None, name: str | None, topics: Sequence[str]) -> dict[str, Any]:
    """Static catalog metadata of one asset (built with the definitions, no I/O): where it lives
    (``dagster/uri``, absolute), its table name, its declared columns (``value_schema``) and a code
    reference to the connector's YAML file. ``kind``, ``name`` and ``topics`` as in
    :class:`assets.translator.AssetProps`."""
    from integrations.catalog import dataset_uri, safe_uri
    from integrations.config import resolve_path
    from integrations.loading import source_file

    meta: dict[str, Any] = {}
    if config is None:
        return meta
    path = source_file(config)
    if path is not None:
        meta["dagster/code_references"] = code_reference(path)
        meta["connector_file"] = dg.MetadataValue.path(str(path))
    try:
        if kind == "source_table":
            meta["dagster/uri"] = dg.MetadataValue.text(safe_uri(config.connection_url))
            if name is not None:
                meta["dagster/table_name"] = dg.MetadataValue.text(_table_name(config.connection_url, name))
        elif kind == "source_folder":
            meta["dagster/uri"] = dg.MetadataValue.text(resolve_path(config.input_path).as_uri())
        elif kind == "parquet_dataset":
            meta["dagster/uri"] = dg.MetadataValue.text(dataset_uri(config, name))
        elif kind == "warehouse_table":
            meta["dagster/uri"] = dg.MetadataValue.text(safe_uri(config.connection_url))
            if name is not None:
                parts = [config.db_schema, name] if getattr(config, "db_schema", None) else [name]
                table = ".".join(f'"{p}"' if "." in p else p for p in parts)
                meta["dagster/table_name"] = dg.MetadataValue.text(_table_name(config.connection_url, table))
    except Exception as e:  # noqa: BLE001 - a location that does not resolve now is left out, not fatal
        log.warning("connector %s: no location metadata for %s %s (%s)", getattr(config, "name", "?"), kind, name, e)
    declared = getattr(config, "value_schema", None)
    if declared and kind in ("parquet_dataset", "warehouse_table", "topic"):
        meta["dagster/column_schema"] = column_schema(declared)
    return meta


def sink_catalog(config: object, asset: SinkAsset) -> dict[str, Any]:
    """Materialization metadata of one sink asset after a write, from cheap calls only: total rows
    (``dagster/row_count``: footers of the dataset's files, or ``COUNT(*)``), the written columns
    (``dagster/column_schema``), the dataset's size and absolute location. Nothing for an asset written
    under dynamic routing or into several tables. A failure is logged and leaves the figures out: it
    never fails the run that wrote the data."""
    from integrations.catalog import dataset_location, dataset_stats, dataset_uri, table_stats
    from integrations.config import TableSinkConfig

    if len(asset.targets) != 1:
        return {}
    folder_or_table = config.table_for(asset.targets[0]) if isinstance(config, TableSinkConfig) else asset.targets[0]
    try:
        if isinstance(config, TableSinkConfig):
            stats = table_stats(config, folder_or_table)
            meta: dict[str, Any] = {}
        else:
            stats = dataset_stats(config, folder_or_table)
            where = dataset_location(config, folder_or_table)
            meta = {"dagster/uri": dg.MetadataValue.text(dataset_uri(config, folder_or_table)),
                    "path": dg.MetadataValue.path(where),
                    "dataset_bytes": dg.MetadataValue.int(stats.bytes or 0),
                    "dataset_size": dg.MetadataValue.text(human_size(stats.bytes or 0))}
    except Exception as e:  # noqa: BLE001
        log.warning("connector %s: no row count for %s (%s)", getattr(config, "name", "?"), folder_or_table, e)
        return {}
    if stats.rows is not None:
        meta["dagster/row_count"] = dg.MetadataValue.int(stats.rows)
    if stats.columns:
        meta["dagster/column_schema"] = column_schema(stats.columns)
    return meta
