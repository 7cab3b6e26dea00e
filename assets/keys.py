"""Asset keys for the lineage ``source table or folder → Kafka topic → dataset or table``."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import dagster as dg
import pyarrow as pa
import sqlalchemy as sa

from integrations.config import (
    FileSourceConfig,
    ParquetSinkConfig,
    SqlSourceConfig,
    TableSinkConfig,
    resolve_env,
)
from integrations.errors import ConfigError
from integrations.transforms import Batch
from integrations.transforms.chain import TransformChain
from integrations.transforms.config import RegexRouterConfig, TimestampRouterConfig


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


# -- renaming by a translator ------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyOrigin:
    """What a default key names: ``kind`` (source_table, source_folder, topic, parquet_dataset,
    warehouse_table), the connector that declares it (None for a topic, filled in by the translator
    layer), the table, folder or topic name, and the topics involved."""

    kind: str
    connector: object | None
    name: str | None
    topics: tuple[str, ...]


@dataclass
class Naming:
    """Key renaming while definitions are built: ``renamed`` maps default keys to a translator's keys;
    ``origins`` records what every default key handed out names."""

    renamed: dict[dg.AssetKey, dg.AssetKey] = field(default_factory=dict)
    origins: dict[dg.AssetKey, KeyOrigin] = field(default_factory=dict)


_NAMING: ContextVar[Naming | None] = ContextVar("headrace_naming", default=None)


@contextmanager
def naming(n: Naming) -> Iterator[Naming]:
    """Build definitions under ``n``: every key function below returns renamed keys and records origins.

    Keys are fixed when definitions are built (asset bodies use the keys captured then), so runs see
    the same keys as the graph."""
    token = _NAMING.set(n)
    try:
        yield n
    finally:
        _NAMING.reset(token)


def named(key: dg.AssetKey, origin: KeyOrigin) -> dg.AssetKey:
    """``key`` as the active naming renames it (itself outside a translated build)."""
    n = _NAMING.get()
    if n is None:
        return key
    n.origins.setdefault(key, origin)
    return n.renamed.get(key, key)


def qualified(*parts: str) -> dg.AssetKey:
    """``root/part/.../label`` whose last part (the label Dagster's asset graph draws on a node) is the
    parts after the root joined by ``__``, so a topic, a dataset and a table of one name cannot be
    confused: ``parquet/lake/lake__shop_orders``, ``warehouse/duckdb_wh/duckdb_wh__orders``."""
    root, *rest = parts
    return dg.AssetKey([root, *rest[:-1], "__".join(rest)])


def table_key(config: SqlSourceConfig, table: str) -> dg.AssetKey:
    """The external source table (or custom query): ``source/<database>/<database>__<table>``."""
    label = database_label(config.connection_url, config.name)
    if config.query:
        key = qualified("source", label, clean(f"{config.name}_query"))
    else:
        key = qualified("source", label, *[clean(p) for p in table.split(".")])
    return named(key, KeyOrigin("source_table", config, None if config.query else table,
                                (config.topic_for(table),)))


def folder_key(config: FileSourceConfig) -> dg.AssetKey:
    """The external spooling folder of a file source."""
    return named(dg.AssetKey(["files", clean(config.name)]),
                 KeyOrigin("source_folder", config, config.input_path, (config.topic,)))


def topic_key(topic: str) -> dg.AssetKey:
    """A Kafka topic."""
    return named(dg.AssetKey(["kafka", clean(topic)]), KeyOrigin("topic", None, topic, (topic,)))


def dataset_key(config: ParquetSinkConfig, topic: str) -> dg.AssetKey:
    """The Parquet dataset a sink writes for one topic: ``parquet/<connector>/<connector>__<topic>``."""
    return qualified("parquet", clean(config.name), clean(topic))


def target_table_key(config: TableSinkConfig, topic: str) -> dg.AssetKey:
    """The warehouse table a table sink writes for one topic: ``warehouse/<database>/[<schema>/]<database>__
    [<schema>__]<table>``."""
    table = config.table_name_format.replace("${topic}", topic)
    parts = [config.db_schema, table] if config.db_schema else [table]
    return qualified("warehouse", database_label(config.connection_url, config.name), *[clean(p) for p in parts])


def group_of(config: object) -> str:
    """The asset group of a connector."""
    return clean(getattr(config, "group_name", None) or config.name)


# -- sinks with routing transforms -------------------------------------------------------------------
@dataclass(frozen=True)
class SinkAsset:
    """One asset of a sink: its key, the source topics it reads (its deps), and the topics it is written
    under (``targets``; empty when routing is dynamic, i.e. known only per record)."""

    key: dg.AssetKey
    sources: tuple[str, ...]
    targets: tuple[str, ...]


def routers_of(config: ParquetSinkConfig | TableSinkConfig) -> list[RegexRouterConfig | TimestampRouterConfig]:
    """The routing transforms (RegexRouter, TimestampRouter) of a sink, in chain order."""
    return [t for t in config.transforms if isinstance(t, (RegexRouterConfig, TimestampRouterConfig))]


def is_dynamic(config: ParquetSinkConfig | TableSinkConfig) -> bool:
    """Whether a sink's routed topics are known only per record: a TimestampRouter, or a router behind a
    predicate."""
    return any(isinstance(r, TimestampRouterConfig) or r.predicate is not None for r in routers_of(config))


def routed_topic(config: ParquetSinkConfig | TableSinkConfig, topic: str) -> str:
    """The topic the sink writes ``topic``'s records under, for static routing (RegexRouters without
    predicates): the engine's own routers applied to the name, in chain order; ``topic`` without routers."""
    routers = routers_of(config)
    if not routers:
        return topic
    if is_dynamic(config):
        raise ValueError(f"connector {config.name}: the routed topic of {topic!r} depends on each record")
    out = TransformChain(routers).apply(Batch.of(pa.table({"_": pa.nulls(1)}), topic=topic))
    return out.topics()[0]


def describe_routers(config: ParquetSinkConfig | TableSinkConfig) -> str:
    """The routing transforms of a sink as text, e.g. ``TimestampRouter(topic_format '${topic}-${timestamp}',
    timestamp_format 'yyyyMMdd')``."""
    out = []
    for r in routers_of(config):
        if isinstance(r, TimestampRouterConfig):
            text = f"TimestampRouter(topic_format {r.topic_format!r}, timestamp_format {r.timestamp_format!r})"
        else:
            text = f"RegexRouter(regex {r.regex!r}, replacement {r.replacement!r})"
        if r.predicate is not None:
            text += f" {'unless' if r.negate else 'if'} {r.predicate.type}"
        out.append(text)
    return ", then ".join(out)


def sink_assets(config: ParquetSinkConfig | TableSinkConfig) -> list[SinkAsset]:
    """The assets of a sink, in topic order.

    Without routing, one per topic, keyed by the topic. With static routing, keyed by the routed topic
    (source topics routed to one table share one asset). With dynamic routing, one per source topic,
    keyed by it. A Parquet sink that would route two source topics into one topic is refused (their
    files would overwrite each other; the engine refuses it too)."""
    key_of = (lambda t: target_table_key(config, t)) if isinstance(config, TableSinkConfig) else \
        (lambda t: dataset_key(config, t))
    dynamic = is_dynamic(config)
    grouped: dict[dg.AssetKey, tuple[list[str], list[str]]] = {}
    for topic in config.topics:
        target = topic if dynamic else routed_topic(config, topic)
        sources, targets = grouped.setdefault(key_of(target), ([], []))
        sources.append(topic)
        if not dynamic and target not in targets:
            targets.append(target)
    if isinstance(config, ParquetSinkConfig) and routers_of(config) and not dynamic:
        by_target: dict[str, list[str]] = {}
        for topic in config.topics:
            by_target.setdefault(routed_topic(config, topic), []).append(topic)
        for target, sources in by_target.items():
            if len(sources) > 1:
                raise ConfigError(
                    f"connector {config.name}: field 'transforms' routes topics {', '.join(map(repr, sources))} into "
                    f"one topic {target!r} ({describe_routers(config)}). The Parquet sink names files "
                    "<topic>+<partition>+<start offset>, so their files would overwrite each other; route "
                    "different source topics to different topics.")
    table = isinstance(config, TableSinkConfig)
    kind = "warehouse_table" if table else "parquet_dataset"

    def origin(sources: list[str], targets: list[str]) -> KeyOrigin:
        where = None if len(targets) != 1 else config.table_for(targets[0]) if table else targets[0]
        return KeyOrigin(kind, config, where, tuple(sources))

    return [SinkAsset(named(k, origin(s, t)), tuple(s), tuple(t)) for k, (s, t) in grouped.items()]
