"""TimestampConverter: a field (or the whole key/value) between timestamps, unix times, dates,
times and formatted strings (Java ``SimpleDateFormat`` patterns), vectorised with Arrow casts.
"""

from __future__ import annotations

import pyarrow as pa

from integrations.transforms.batch import TIMESTAMP_TYPE, Batch, Column, is_primitive, primitive
from integrations.transforms.config import TimestampConverterConfig
from integrations.transforms.errors import TransformError
from integrations.transforms.smt_step import Step, _column, _on_part, _set_column
from integrations.transforms.timefmt import format_timestamps, parse_timestamps

_UNIX_UNITS = {"seconds": "s", "milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns"}


def _to_timestamp(col: Column, fmt: str, precision: str) -> Column:
    typ = col.type
    if pa.types.is_timestamp(typ):
        return col if typ.tz else col.cast(pa.timestamp(typ.unit, tz="UTC"))
    if pa.types.is_integer(typ):
        unit = _UNIX_UNITS[precision]
        return col.cast(pa.int64()).cast(pa.timestamp(unit, tz="UTC"))
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        if not fmt:
            raise TransformError("a string timestamp needs 'format' (a SimpleDateFormat pattern) to be parsed")
        try:
            return parse_timestamps(col, fmt, "ms")
        except ValueError as e:  # pa.ArrowInvalid is a ValueError
            raise TransformError(f"could not parse timestamps with format {fmt!r}: {e}") from None
    if pa.types.is_date(typ):
        return col.cast(pa.timestamp("ms")).cast(TIMESTAMP_TYPE)
    if pa.types.is_time(typ):
        ms = col.cast(pa.time32("ms")) if typ.unit in ("s", "ms") else col.cast(pa.time64("ns"))
        return ms.cast(pa.int64() if pa.types.is_time64(ms.type) else pa.int32()).cast(pa.int64()).cast(
            pa.timestamp("ms" if pa.types.is_time32(ms.type) else "ns", tz="UTC"))
    raise TransformError(f"cannot read a timestamp from a {typ} field")


def convert_timestamps(col: Column, cfg: TimestampConverterConfig) -> Column:
    """Convert one column to the configured target type (vectorised)."""
    ts = _to_timestamp(col, cfg.format, cfg.unix_precision)
    target = cfg.target_type
    if target == "string":
        return format_timestamps(ts, cfg.format)
    if target == "unix":
        unit = _UNIX_UNITS[cfg.unix_precision]
        return ts.cast(pa.timestamp(unit, tz="UTC"), safe=False).cast(pa.int64())
    if target == "Date":
        return ts.cast(pa.date32())
    if target == "Time":
        return ts.cast(pa.time32("ms"), safe=False)
    unit = ts.type.unit if ts.type.unit in ("us", "ns") else "ms"
    return ts.cast(pa.timestamp(unit, tz="UTC"), safe=False)


def timestamp_converter(cfg: TimestampConverterConfig) -> Step:
    """TimestampConverter: a field (or the whole key/value) to string, unix, Date, Time or Timestamp."""

    def apply(table: pa.Table, _b: Batch) -> pa.Table:
        if not cfg.field:
            if not is_primitive(table):
                raise TransformError("with no 'field', the whole key/value must be a primitive timestamp")
            return primitive(convert_timestamps(table.column(0), cfg))
        return _set_column(table, cfg.field, convert_timestamps(_column(table, cfg.field, "field"), cfg))

    return Step(cfg.type, _on_part(cfg.record_part, apply))
