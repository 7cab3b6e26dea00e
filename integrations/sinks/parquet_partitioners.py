"""Partitioners and storage of the Parquet sink, all vectorised over Arrow batches.

A partitioner maps each record to the relative folder of its file (its *encoded partition*):

- ``default``: ``partition=<kafka partition>``;
- ``field``: ``<f1>=<v1>/<f2>=<v2>`` (Hive style, values percent-encoded, NULL as
  ``__HIVE_DEFAULT_PARTITION__``);
- ``time``: the record time formatted by ``path_format`` in ``timezone``.

The record time comes from ``timestamp_field`` (a timestamp, epoch milliseconds or an ISO-8601 string)
or, without it, from the Kafka message timestamp. Both are deterministic, so re-runs rebuild the same
paths (wall-clock time is never used).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
import zoneinfo
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from integrations.config import ParquetSinkConfig, resolve_env, resolve_path
from integrations.errors import HeadraceError

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
DEFAULT_FORMATS = {"daily": "year=YYYY/month=MM/day=dd", "hourly": "year=YYYY/month=MM/day=dd/hour=HH"}
_TOKENS = {"YYYY": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M"}
_TOKEN_RE = re.compile(r"'([^']*)'|YYYY|MM|dd|HH|mm|%")
_FLOOR = [("%S", "second"), ("%M", "minute"), ("%H", "hour"), ("%d", "day"), ("%m", "month"), ("%Y", "year")]
DURATION_MS = {"daily": 86_400_000, "hourly": 3_600_000}


def strftime_format(path_format: str) -> str:
    """Translate a Kafka Connect style ``path_format`` (``'year'=YYYY/...``) into a strftime format."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return m.group(1).replace("%", "%%")
        return "%%" if m.group(0) == "%" else _TOKENS[m.group(0)]

    fmt = _TOKEN_RE.sub(sub, path_format)
    if ".." in fmt.split("/") or fmt.startswith("/"):
        raise HeadraceError(f"path_format {path_format!r} must be a relative path without '..'")
    return fmt


def record_times(table: pa.Table, field: str | None, kafka_ms: pa.Array | None) -> pa.Array:
    """Record times as ``timestamp[ms, UTC]``: from ``field`` or the Kafka timestamps."""
    if field is None:
        if kafka_ms is None:
            raise HeadraceError("the Kafka timestamps are needed but were not passed to the sink")
        return pc.cast(kafka_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    if field not in table.column_names:
        raise HeadraceError(f"timestamp_field {field!r} is not in the record (columns: {table.column_names})")
    col = table.column(field).combine_chunks()
    if col.null_count:
        raise HeadraceError(f"timestamp_field {field!r} is null in {col.null_count} record(s)")
    t = col.type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            col = pc.assume_timezone(col, "UTC")
        return col.cast(pa.timestamp("ms", tz="UTC"))
    if pa.types.is_integer(t):
        return col.cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return col.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("ms", tz="UTC"))
        except pa.ArrowInvalid as e:
            raise HeadraceError(f"timestamp_field {field!r}: not an ISO-8601 time: {e}") from e
    if pa.types.is_date(t):
        return col.cast(pa.timestamp("ms")).cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    raise HeadraceError(f"timestamp_field {field!r} has type {t}; expected a timestamp, epoch ms or ISO string")


class Partitioner:
    """Maps a batch to the encoded partition (relative folder) of each record."""

    def __init__(self, config: ParquetSinkConfig) -> None:
        self.kind = config.partitioner
        self.fields = list(config.partition_fields)
        self.timezone = config.timezone
        self.duration = config.partition_duration
        self.fmt = strftime_format(config.path_format or DEFAULT_FORMATS[config.partition_duration])

    @property
    def drops(self) -> list[str]:
        """Columns stored in the path instead of the file (Hive convention)."""
        return self.fields if self.kind == "field" else []

    def paths(self, table: pa.Table, partition: int, times: pa.Array | None) -> pa.Array | str:
        """A constant path (str) or one path per record (string array)."""
        if self.kind == "default":
            return f"partition={partition}"
        if self.kind == "time":
            assert times is not None
            return self.encode_times(times)
        parts = []
        for f in self.fields:
            if f not in table.column_names:
                raise HeadraceError(f"partition field {f!r} is not in the record (columns: {table.column_names})")
            col = table.column(f).combine_chunks()
            if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
                col = pc.strftime(col, format="%Y-%m-%d" if pa.types.is_date(col.type) else "%Y-%m-%dT%H:%M:%S")
            text = col.cast(pa.string())
            encoded = _uri_encode(text)
            parts.append(pc.binary_join_element_wise(f"{_uri_encode_one(f)}=", encoded, ""))
        if len(parts) == 1:
            return parts[0]
        return pc.binary_join_element_wise(*parts, "/")

    def encode_times(self, times: pa.Array) -> pa.Array:
        """Format UTC times as paths in the configured time zone.

        The local wall-clock times are floored to the finest unit the format shows, and only the
        distinct periods are formatted (strftime per record is ten times slower).
        """
        local = pc.local_timestamp(times.cast(pa.timestamp("ms", tz=self.timezone)))
        unit = next((u for tok, u in _FLOOR if tok in self.fmt), None)
        if unit is None:
            return pc.strftime(local, format=self.fmt)
        enc = pc.floor_temporal(local, unit=unit).dictionary_encode()
        return pc.strftime(enc.dictionary, format=self.fmt).take(enc.indices)

    def window_paths(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        """Every encoded partition whose period starts in ``[start, end)``."""
        step = dt.timedelta(milliseconds=DURATION_MS[self.duration])
        tz = zoneinfo.ZoneInfo(self.timezone)
        t = start.astimezone(tz)
        out: list[str] = []
        while t < end:
            out.append(t.strftime(self.fmt))
            t = (t.astimezone(dt.UTC) + step).astimezone(tz)
        return list(dict.fromkeys(out))


def _uri_encode_one(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _uri_encode(text: pa.Array) -> pa.Array:
    """Percent-encode partition values (only the distinct ones go through Python)."""
    enc = text.dictionary_encode()
    values = [None if v is None else _uri_encode_one(v) for v in enc.dictionary.to_pylist()]
    out = pc.take(pa.array(values, pa.string()), enc.indices)
    return pc.fill_null(out, HIVE_NULL)


def open_root(config: ParquetSinkConfig) -> tuple[pafs.FileSystem, str, bool]:
    """The filesystem, root path inside it, and whether it renames atomically (local disk)."""
    raw = resolve_env(config.path)
    opts = {k: resolve_env(v) for k, v in config.storage_options.items()}
    if "://" not in raw or raw.startswith("file://"):
        root = resolve_path(raw.removeprefix("file://"))
        return pafs.LocalFileSystem(), str(root), True
    scheme, _, rest = raw.partition("://")
    if scheme in ("s3", "s3a"):
        kwargs: dict = {k: v for k, v in opts.items() if k in ("endpoint_override", "region", "access_key",
                                                                  "secret_key", "scheme", "session_token")}
        kwargs.setdefault("allow_bucket_creation", False)
        return pafs.S3FileSystem(**kwargs), rest.rstrip("/"), False
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(fsspec.filesystem(scheme, **opts))), rest.rstrip("/"), False


def list_files(fs: pafs.FileSystem, base: str) -> Iterator[str]:
    """Every ``.parquet`` file under ``base`` (hidden staging folders excluded), sorted."""
    sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    paths = [i.path for i in fs.get_file_info(sel) if i.type == pafs.FileType.File]
    for p in sorted(paths):
        rel = p[len(base):].lstrip("/")
        if p.endswith(".parquet") and not any(seg.startswith((".", "_")) for seg in rel.split("/")):
            yield p
