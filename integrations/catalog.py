"""What a data catalog shows about a sink's output, from cheap calls only: rows, bytes and columns of a
Parquet dataset (file listings and Parquet footers, never the data), rows and columns of a warehouse
table (``COUNT(*)`` and the information schema), and secret-free locations (URIs with no password and
no query string).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from integrations.config import ParquetSinkConfig, TableSinkConfig, redact_url, resolve_env


@dataclass(frozen=True)
class OutputStats:
    """Rows, bytes and columns (``{name: type}``) of a dataset or table; None where unknown."""

    rows: int | None = None
    bytes: int | None = None
    columns: dict[str, str] = field(default_factory=dict)


def safe_uri(url: str) -> str:
    """A connection URL for display: ``${env:…}`` resolved except secrets, the password masked, the query
    string (which may carry credentials) dropped. Unparsable URLs are only masked."""
    try:
        import sqlalchemy as sa

        u = sa.make_url(resolve_env(url))
        return u.set(query={}).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unresolvable URL is still shown, masked
        return redact_url(url).split("?", 1)[0]


def dataset_uri(config: ParquetSinkConfig, folder: str | None) -> str:
    """:func:`dataset_location` as a URI (``file:///…`` for local folders)."""
    where = dataset_location(config, folder)
    return where if "://" in where else Path(where).as_uri()


def dataset_location(config: ParquetSinkConfig, folder: str | None) -> str:
    """The absolute location of a Parquet sink's topic folder (``folder`` None: the sink's root): a local
    absolute path, or the object store URL as written (``s3://bucket/prefix/<topic>``). Opens no
    filesystem (definitions call it when they load)."""
    from integrations.config import resolve_path

    raw = resolve_env(config.path)
    if "://" not in raw or raw.startswith("file://"):
        base = str(resolve_path(raw.removeprefix("file://")))
    else:
        base = redact_url(raw.rstrip("/").split("?", 1)[0])  # no credentials, no query string
    return base if folder is None else f"{base}/{folder}"


def dataset_stats(config: ParquetSinkConfig, folder: str) -> OutputStats:
    """Rows and bytes of every published file of ``<root>/<folder>`` (footers only), and the columns of the
    schema of the last file in path order (the newest of its partition folder)."""
    import pyarrow.parquet as pq

    from integrations.sinks.parquet_partitioners import list_files, open_root

    fs, root, _local = open_root(config)
    files = list(list_files(fs, f"{root}/{folder}"))
    if not files:
        return OutputStats(rows=0, bytes=0)
    rows, newest = 0, None
    for f in files:  # sorted: the last file has the highest start offset, the newest schema
        newest = pq.read_metadata(f, filesystem=fs)
        rows += newest.num_rows
    size = sum(i.size or 0 for i in fs.get_file_info(files))
    schema = newest.schema.to_arrow_schema()
    return OutputStats(rows=rows, bytes=size, columns={f.name: str(f.type) for f in schema})


def table_stats(config: TableSinkConfig, table: str) -> OutputStats:
    """Rows (``COUNT(*)``) and columns (information schema) of a table sink's target table; empty when the
    table does not exist yet."""
    from integrations.sinks.table import open_backend, quote

    backend = open_backend(config)
    try:
        cols = backend.columns(table)
        if cols is None:
            return OutputStats()
        name = f"{quote(config.db_schema)}.{quote(table)}" if config.db_schema else quote(table)
        if hasattr(backend, "con"):  # DuckDB
            rows = backend.con.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]  # noqa: S608 (quoted)
        elif hasattr(backend, "conn"):  # PostgreSQL (psycopg)
            with backend.conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM {name}")  # noqa: S608 (quoted)
                rows = cur.fetchone()[0]
            backend.conn.rollback()
        else:  # any SQLAlchemy dialect: the dialect quotes
            import sqlalchemy as sa

            with backend.engine.connect() as c:
                rows = c.execute(sa.select(sa.func.count()).select_from(sa.table(table, schema=config.db_schema))
                                 ).scalar_one()
        return OutputStats(rows=int(rows), columns={k: str(v) for k, v in cols.items()})
    finally:
        backend.close()


def human_size(n: int) -> str:
    """Bytes as a size: ``512 B``, ``1.5 KiB``, ``3.2 MiB``…"""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def local_path(path: str) -> str:
    """``path`` made absolute when it is a local path (URLs as they are)."""
    return path if "://" in path else str(Path(path).resolve())


def undrained(config: ParquetSinkConfig | TableSinkConfig, kafka: object, topics: list[str]) -> dict[str, int]:
    """Records of ``topics`` the sink has not yet written, per topic: each partition's end offset minus the
    sink's next offset (the offsets it stores with its data when it does, else its consumer group's;
    the log start when it has none). This is what a partitioned dataset's streaming has left, whatever
    backfills did (they use throw-away groups and never move these offsets)."""
    from integrations.runtime.sink_plan import lag
    from integrations.runtime.sink_runner import build_sink

    sink = build_sink(config)
    try:
        stored = sink.stored_offsets(list(config.topics))
    finally:
        sink.close()
    positions = None if stored is None else {k: v for k, v in stored.items() if v is not None}
    return lag(kafka, config.consumer_group, topics, positions)
