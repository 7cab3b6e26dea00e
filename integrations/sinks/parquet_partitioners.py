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
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from integrations.config import ParquetSinkConfig, resolve_env, resolve_path
from integrations.errors import HeadraceError

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
DEFAULT_FORMATS = {"daily": "year=YYYY/month=MM/day=dd", "hourly": "year=YYYY/month=MM/day=dd/hour=HH"}
_TOKENS = {"YYYY": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M"}
_TOKEN_RE = re.compile(r"'([^']*)'|YYYY|MM|dd|HH|mm|%")
_UNITS = [("YYYY", "year"), ("MM", "month"), ("dd", "day"), ("HH", "hour"), ("mm", "minute")]  # coarse to fine
_UNIT_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000, "month": 31 * 86_400_000,
            "year": 366 * 86_400_000}  # upper bounds of one period of each unit
DURATION_MS = {"daily": 86_400_000, "hourly": 3_600_000}
_MINUTE = 60_000
_CHUNK = 1 << 20  # minutes sampled at once


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
        self.path_format = config.path_format or DEFAULT_FORMATS[config.partition_duration]
        self.fmt = strftime_format(self.path_format)
        tokens = {m.group(0) for m in _TOKEN_RE.finditer(self.path_format) if m.group(1) is None}
        self.tokens = [tok for tok, _u in _UNITS if tok in tokens]
        self.unit = next((u for tok, u in reversed(_UNITS) if tok in tokens), None)  # the finest unit shown

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
        if self.unit is None:
            return pc.strftime(local, format=self.fmt)
        enc = pc.floor_temporal(local, unit=self.unit).dictionary_encode()
        return pc.strftime(enc.dictionary, format=self.fmt).take(enc.indices)

    # -- folders and the time they hold (window rebuilds, Dagster partitions) -------------------------

    def check_periods(self) -> None:
        """Refuse a ``path_format`` whose folders are not whole calendar periods.

        A window rebuild needs each folder to be one period of the format's finest unit, so the format
        must show the year and every unit down to its finest (``YYYY/MM/dd/HH``, not ``dd/HH``).
        """
        names = [u for _t, u in _UNITS]
        want = [t for t, _u in _UNITS][: names.index(self.unit) + 1] if self.unit else ["YYYY"]
        missing = [t for t in want if t not in self.tokens]
        if missing:
            raise HeadraceError(
                f"path_format {self.path_format!r} lacks {', '.join(missing)}: a folder would hold records of "
                "different days or years, so a time window cannot be rebuilt; use every token from YYYY down to "
                "the finest one, e.g. year=YYYY/month=MM/day=dd/hour=HH")

    def _floors(self, ms: np.ndarray) -> np.ndarray:
        """Local wall-clock time of each UTC instant (epoch ms) floored to the finest unit, as naive epoch
        ms: instants with equal floors go to the same folder (the floors ``encode_times`` formats)."""
        local = pc.local_timestamp(pa.array(ms, pa.timestamp("ms", tz=self.timezone)))
        offsets = local.cast(pa.int64()).to_numpy() - ms
        odd = offsets % _MINUTE != 0
        if odd.any():
            at = dt.datetime.fromtimestamp(int(ms[odd.argmax()]) // 1000, dt.UTC)
            raise HeadraceError(f"timezone {self.timezone} is {int(offsets[odd.argmax()]) // 1000} s off UTC at {at}; "
                                "time windows need offsets of whole minutes")
        return pc.floor_temporal(local, unit=self.unit).cast(pa.int64()).to_numpy()

    def _window_floors(self, a: int, b: int) -> np.ndarray:
        """The distinct floors of the minutes in ``[a, b)`` (minute-aligned epoch ms), sorted."""
        parts = [np.unique(self._floors(np.arange(s, min(b, s + _CHUNK * _MINUTE), _MINUTE, dtype=np.int64)))
                 for s in range(a, b, _CHUNK * _MINUTE)]
        return np.unique(np.concatenate(parts)) if parts else np.array([], np.int64)

    def _close_span(self, seed: np.ndarray, a: int, b: int, margin: int, edges: bool
                    ) -> tuple[np.ndarray, int, int] | None:
        """Grow ``seed`` (floors) to the span of every minute whose floor is in it, and add the floors of
        every minute inside that span, until nothing changes. Samples ``[a, b)`` widened by ``margin``
        (with ``edges``, only the edges of a long ``[a, b)``, whose floors are all in ``seed``); None
        when the span reaches the sampled edge."""
        if not edges or b - a <= 4 * margin:
            m = np.arange(a - margin, b + margin, _MINUTE, dtype=np.int64)
        else:  # the interior's floors are all in seed already; only folders at the edges can reach out
            m = np.concatenate([np.arange(a - margin, a + margin, _MINUTE, dtype=np.int64),
                                np.arange(b - margin, b + margin, _MINUTE, dtype=np.int64)])
        f = self._floors(m)
        floors = seed
        while True:
            idx = np.flatnonzero(np.isin(f, floors))
            if not len(idx):
                return floors, b, a  # an empty span: no minute goes to these folders
            lo, hi = int(idx[0]), int(idx[-1])
            if lo == 0 or hi == len(m) - 1:
                return None
            grown = np.union1d(floors, f[lo:hi + 1])
            if len(grown) == len(floors):
                return floors, int(m[lo]), int(m[hi]) + _MINUTE
            floors = grown

    def _span(self, seed: np.ndarray, a: int, b: int, edges: bool) -> tuple[np.ndarray, int, int]:
        margin = 2 * 3_600_000  # beyond any DST shift; grown while a folder reaches the sampled edge
        while margin <= 64 * _UNIT_MS["year"]:
            got = self._close_span(seed, a, b, margin, edges)
            if got is not None:
                return got
            margin *= 4
        raise HeadraceError(f"the folders of path_format {self.path_format!r} in {self.timezone} around "
                            f"{dt.datetime.fromtimestamp(a // 1000, dt.UTC)} span more than 64 years")

    def _format(self, floors: np.ndarray) -> list[str]:
        return pc.strftime(pa.array(floors, pa.timestamp("ms")), format=self.fmt).to_pylist()

    def window_folders(self, start_ms: int, end_ms: int) -> tuple[list[str], int, int]:
        """The folders that records of ``[start_ms, end_ms)`` go to, and the span ``[lo, hi)`` (epoch ms)
        of every instant whose records go to those folders, which contains the window.

        A rebuild of the window reads and rewrites ``[lo, hi)``, since a folder's records can lie outside
        the window: the repeated 02:00 of a DST fall-back night is one folder for two Dagster hours, and a
        daily folder holds 24 hourly partitions. The span is closed: every instant in it goes to one of
        the folders. Folders come from the floors ``encode_times`` formats, taken on every UTC minute
        (zone offsets and period bounds are whole minutes), so windows and folders always agree.
        """
        self.check_periods()
        a, b = start_ms - start_ms % _MINUTE, -(-end_ms // _MINUTE) * _MINUTE
        floors, lo, hi = self._span(self._window_floors(a, b), a, b, True)
        return self._format(floors), min(lo, start_ms), max(hi, end_ms)

    def folder_window(self, path: str) -> tuple[int, int] | None:
        """The span ``[lo, hi)`` (epoch ms) of the instants whose records go to folder ``path`` (and to any
        folder sharing instants with it), or None when the format never makes ``path``."""
        self.check_periods()
        try:
            local = dt.datetime.strptime(path, self.fmt)
        except ValueError:
            return None
        floor = int(local.replace(tzinfo=dt.UTC).timestamp() * 1000)
        if self._format(np.array([floor], np.int64)) != [path]:
            return None
        near = 15 * 3_600_000  # UTC offsets are within 14 hours
        _floors, lo, hi = self._span(np.array([floor], np.int64), floor - near, floor + _UNIT_MS[self.unit] + near,
                                    False)
        return (lo, hi) if hi > lo else None

    def window_paths(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        """Every folder that records of ``[start, end)`` (aware datetimes) go to, in time order."""
        s, e = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        self.check_periods()
        return self._format(self._window_floors(s - s % _MINUTE, -(-e // _MINUTE) * _MINUTE)) if e > s else []

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
