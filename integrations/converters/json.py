"""JSON converter, per batch: Arrow rows to compact JSON bytes with DuckDB's ``to_json``, and
newline-joined JSON values back to Arrow with ``pyarrow.json`` (C++), never per Python row.

What each Arrow type becomes in a JSON value (and how ``decode`` with a declared schema restores it):

- integers, booleans: JSON numbers / ``true`` ``false``; NULL is ``null`` (an empty string stays ``""``).
- decimals: exact JSON numbers by default (``decimal_format="numeric"``, e.g. ``12.30`` or ``12.3``,
  never rounded through a float); ``decimal_format="string"`` writes ``"12.30"`` for consumers that
  parse numbers as doubles.
- float32 / float64: JSON numbers (float32 in its shortest form); NaN, +Infinity and -Infinity, which
  JSON cannot carry, become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (as Jackson, hence
  Kafka Connect, writes them); ``decode`` turns them back into floats for float columns.
- strings: JSON strings, UTF-8 unchanged (emoji, CJK, combining marks).
- binary: base64 strings (Kafka Connect's JsonConverter does the same); decoded for binary columns.
- date / time: ``"2024-02-29"`` / ``"12:34:56.5"``; timestamps: ``"2024-03-31 01:00:00.5+00"`` for UTC
  instants, ``"2024-03-31 01:00:00.5"`` for wall-clock timestamps.
- intervals: ISO-8601 durations ``"P<months>M<days>DT<seconds>S"`` (e.g. ``"P14M3DT14706.5S"``); they
  stay strings on decode (Parquet has no month/day/nanosecond interval).
- lists and structs: JSON arrays and objects.
- uuid, json/jsonb and enums arrive from the SQL source as strings and stay JSON strings.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from integrations.errors import HeadraceError

_local = threading.local()
_NONFINITE = re.compile(rb'"(NaN|Infinity|-Infinity)"')


def _duck() -> duckdb.DuckDBPyConnection:
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        con.execute("SET threads=1")
        _local.con = con
    return con


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ConversionError(HeadraceError):
    """A batch could not be converted to or from JSON."""


def interval_iso(arr: pa.Array) -> pa.Array:
    """month_day_nano intervals as ISO-8601 durations ``P<m>M<d>DT<s>S``, vectorised."""
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    rec = np.dtype([("m", "<i4"), ("d", "<i4"), ("ns", "<i8")])
    vals = np.frombuffer(arr.buffers()[1], dtype=rec, count=arr.offset + n)[arr.offset:]
    ns = vals["ns"]
    neg = ns < 0
    absns = np.abs(ns)
    whole = pa.array(absns // 1_000_000_000).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(absns % 1_000_000_000).cast(pa.string()), 9, "0")
    frac = pc.replace_substring_regex(frac, "0+$", "")
    secs = pc.if_else(pc.equal(pc.utf8_length(frac), 0), whole, pc.binary_join_element_wise(whole, frac, "."))
    secs = pc.if_else(pa.array(neg), pc.binary_join_element_wise(pa.scalar("-"), secs, ""), secs)
    out = pc.binary_join_element_wise(
        pa.scalar("P"), pa.array(vals["m"]).cast(pa.string()), pa.scalar("M"),
        pa.array(vals["d"]).cast(pa.string()), pa.scalar("DT"), secs, pa.scalar("S"), "",
    )
    return pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.string()))


def _has_nonfinite(col: pa.ChunkedArray) -> bool:
    if col.null_count == len(col):
        return False
    finite = pc.is_finite(col)
    return not pc.all(pc.fill_null(finite, True)).as_py()


def _nested_floats(t: pa.DataType) -> bool:
    """True when a float sits inside list, struct or map type ``t``."""
    from integrations.converters.base import nested_has  # base imports this module

    return not pa.types.is_floating(t) and nested_has(t, pa.types.is_floating)


def _nested_nonfinite(col: pa.ChunkedArray) -> bool:
    """True when a float nested in ``col`` (inside lists, structs or maps) is NaN or ±Infinity."""
    from integrations.converters.base import convert_nested  # base imports this module

    if not _nested_floats(col.type):
        return False
    found: list[bool] = []

    def leaf(a: pa.Array, _t: pa.DataType | None) -> pa.Array:
        if pa.types.is_floating(a.type) and len(a) and _has_nonfinite(pa.chunked_array([a])):
            found.append(True)
        return a

    convert_nested(col, leaf)
    return bool(found)


class JsonConverter:
    """Kafka Connect's JsonConverter (schemas.enable=false), vectorised over Arrow batches."""

    def __init__(self, decimal_format: str = "numeric") -> None:
        if decimal_format not in ("numeric", "string"):
            raise ValueError(f"decimal_format must be 'numeric' or 'string', got {decimal_format!r}")
        self.decimal_format = decimal_format

    def _prepare(self, table: pa.Table) -> tuple[pa.Table, str]:
        """Rewrite columns JSON cannot carry as they are; return the table and the SELECT list."""
        exprs, changed = [], False
        for i, f in enumerate(table.schema):
            name, t = _ident(f.name), f.type
            if pa.types.is_interval(t):
                col = table.column(i)
                table = table.set_column(i, f.name, pa.chunked_array(
                    [interval_iso(c) for c in col.chunks], type=pa.string()))
                exprs.append(name)
            elif pa.types.is_floating(t) and _has_nonfinite(table.column(i)):
                from integrations.converters.json_pairs import nonfinite_json_sql  # noqa: I001 (base imports this)

                exprs.append(f"{nonfinite_json_sql(name, t)} AS {name}")
                changed = True
            elif pa.types.is_float32(t):
                exprs.append(f"CAST(CAST({name} AS VARCHAR) AS JSON) AS {name}")
                changed = True
            elif _nested_nonfinite(table.column(i)):
                # NaN and ±Infinity inside lists, structs or maps: the strings Jackson writes there too
                from integrations.converters.json_pairs import to_pairs_sql  # (base imports this module)

                exprs.append(f"{to_pairs_sql(name, t, quote_floats=True, pairs=False)} AS {name}")
                changed = True
            elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
                exprs.append(f"base64({name}::BLOB) AS {name}")
                changed = True
            elif pa.types.is_decimal(t) and self.decimal_format == "string":
                exprs.append(f"CAST({name} AS VARCHAR) AS {name}")
                changed = True
            else:
                exprs.append(name)
        return table, (", ".join(exprs) if changed else "")

    def encode_array(self, table: pa.Table) -> pa.ChunkedArray:
        """One compact JSON object per row, as an Arrow string column."""
        table, select = self._prepare(table)
        con = _duck()
        con.register("_hr_batch", table)
        try:
            if select:
                sql = f"SELECT to_json(_hr_t)::VARCHAR AS j FROM (SELECT {select} FROM _hr_batch) AS _hr_t"
            else:
                sql = "SELECT to_json(_hr_batch)::VARCHAR AS j FROM _hr_batch"
            out = con.sql(sql).to_arrow_table()
        finally:
            con.unregister("_hr_batch")
        return out.column(0)

    def encode(self, table: pa.Table) -> list[str]:
        """One compact JSON object per row (a list of str; confluent-kafka encodes it as UTF-8)."""
        if table.num_rows == 0:
            return []
        return self.encode_array(table).to_pylist()

    def encode_keys(self, table: pa.Table, columns: Sequence[str]) -> list[str] | None:
        """Message keys from key columns: the bare JSON value for one column, an object for several."""
        if not columns:
            return None
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ConversionError(f"key column(s) {missing} not in the record (columns: {table.column_names})")
        if len(columns) == 1:
            col = table.column(columns[0])
            if pa.types.is_integer(col.type):  # an integer's JSON is its decimal text: a C cast
                return pc.cast(col, pa.string()).to_pylist()
            sub, select = self._prepare(table.select(list(columns)))
            con = _duck()
            con.register("_hr_keys", sub)
            try:
                inner = select or _ident(columns[0])
                sql = f"SELECT to_json(_hr_t.{_ident(columns[0])})::VARCHAR FROM (SELECT {inner} FROM _hr_keys) _hr_t"
                out = con.sql(sql).to_arrow_table()
            finally:
                con.unregister("_hr_keys")
            return out.column(0).to_pylist()
        return self.encode(table.select(list(columns)))

    def decode(self, values: Sequence[bytes], schema: pa.Schema | None = None) -> pa.Table:
        """Parse JSON values (one object each) into a table; ``schema`` fixes column types."""
        if not values:
            return schema.empty_table() if schema is not None else pa.table({})
        blob = b"\n".join(values)
        multiline = blob.count(b"\n") != len(values) - 1
        parse_schema, post = schema, {}
        if schema is not None:
            blob = _unquote_nonfinite(blob, schema)
            fields = []
            for f in schema:
                if pa.types.is_date(f.type) or pa.types.is_time(f.type) or pa.types.is_binary(f.type) \
                        or pa.types.is_large_binary(f.type):
                    post[f.name] = f.type
                    fields.append(pa.field(f.name, pa.string()))
                else:
                    fields.append(f)
            parse_schema = pa.schema(fields)
        if schema is not None and any(_nested_floats(f.type) for f in parse_schema) \
                and _NONFINITE.search(blob) is not None:  # the schema test first: the search scans the batch
            from integrations.converters.json_pairs import parse_declared  # (base imports this module)

            table = parse_declared(list(values), parse_schema)  # "NaN" inside lists or structs
            return _convert_strings(table, post) if post else table
        opts = pj.ParseOptions(
            explicit_schema=parse_schema,
            newlines_in_values=multiline,
            unexpected_field_behavior="infer",
        )
        ropts = pj.ReadOptions(block_size=max(1 << 20, min(len(blob) + 1, 64 << 20)), use_threads=True)
        try:
            table = pj.read_json(io.BytesIO(blob), read_options=ropts, parse_options=opts)
            return _convert_strings(table, post) if post else table
        except (pa.ArrowInvalid, duckdb.Error) as e:
            if schema is None and "changed from" in str(e) and _NONFINITE.search(blob) is not None:
                # valid JSON: a float field carries NaN/Infinity as strings (as Kafka Connect writes them)
                raise ConversionError(
                    f"a field holds both numbers and the strings NaN/Infinity/-Infinity ({e}); schemaless JSON "
                    "cannot tell a float from a string: declare value_schema (e.g. the field as float64)") from e
            raise ConversionError(f"malformed JSON in batch: {e}") from e


def _unquote_nonfinite(blob: bytes, schema: pa.Schema) -> bytes:
    """``"f":"NaN"`` → ``"f":NaN`` for float fields, which pyarrow.json parses as floats."""
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    if not floats or _NONFINITE.search(blob) is None:
        return blob
    names = b"|".join(re.escape(n.encode()) for n in floats)
    pattern = re.compile(rb'("(?:' + names + rb')":)"(NaN|Infinity|-Infinity)"')
    return pattern.sub(rb"\1\2", blob)


def _convert_strings(table: pa.Table, post: dict[str, pa.DataType]) -> pa.Table:
    """Dates, times and base64 binaries, parsed as strings, to their declared types."""
    con = _duck()
    for name, typ in post.items():
        i = table.schema.get_field_index(name)
        if i < 0:
            continue
        col = table.column(i)
        if pa.types.is_date(typ):
            new = pc.cast(col, typ)
        else:
            sql_type = "BLOB" if not pa.types.is_time(typ) else "TIME"
            expr = "from_base64(v)" if sql_type == "BLOB" else "CAST(v AS TIME)"
            con.register("_hr_dec", pa.table({"v": col}))
            try:
                new = con.sql(f"SELECT {expr} AS v FROM _hr_dec").to_arrow_table().column(0).cast(typ)
            finally:
                con.unregister("_hr_dec")
        table = table.set_column(i, pa.field(name, typ), new)
    return table
