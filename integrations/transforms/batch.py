"""The record batch that transforms work on: Arrow columns for the value, key and Kafka metadata.

Kafka Connect's SMTs see one ``ConnectRecord`` at a time: topic, partition, key, value, timestamp
and headers. Headrace keeps the same parts, but as columns over a whole batch, so every transform is
a handful of ``pyarrow.compute`` calls:

* ``value`` / ``key`` are tables, one row per record; a struct value's fields are the columns. A
  primitive value (after ``ExtractField`` of a primitive field, or before ``HoistField``) is a table
  with the single column :data:`PRIMITIVE_COLUMN`.
* ``topic`` is a dictionary-encoded string column, so routers rewrite only the few distinct names.
* ``partition`` (int32), ``offset`` (int64) and ``timestamp`` (timestamp[ms, UTC]) are columns, or
  ``None`` when the runner does not know them (a source does not know the partition before producing).
* ``headers`` maps a header name to a column; a null means "this record has no such header".
* ``tombstone`` marks records whose value is null (Kafka tombstones), or is ``None`` for none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PRIMITIVE_COLUMN = "__value__"
TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")

Column = pa.Array | pa.ChunkedArray


def primitive(values: Column | Sequence[Any]) -> pa.Table:
    """A table holding a primitive (non-struct) key or value per record."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    return pa.table({PRIMITIVE_COLUMN: arr})


def is_primitive(table: pa.Table) -> bool:
    """True when ``table`` holds a primitive key or value rather than a struct of fields."""
    return table.num_columns == 1 and table.column_names[0] == PRIMITIVE_COLUMN


def _column(value: Any, n: int, typ: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        arr = value
    elif isinstance(value, (list, tuple, np.ndarray)):
        arr = pa.array(value)
    else:
        return pa.repeat(pa.scalar(value, typ), n)
    if arr.type != typ:
        if pa.types.is_integer(arr.type) and pa.types.is_timestamp(typ):
            arr = arr.cast(pa.int64()).cast(typ)
        else:
            arr = arr.cast(typ)
    return arr


def topic_column(topic: str | Column | Sequence[str], n: int) -> pa.DictionaryArray:
    """A dictionary-encoded topic column of ``n`` rows (one dictionary entry for a single topic)."""
    if isinstance(topic, str):
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([topic]))
    arr = topic if isinstance(topic, (pa.Array, pa.ChunkedArray)) else pa.array(topic, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    if pa.types.is_dictionary(arr.type):
        return arr
    return pc.dictionary_encode(arr)


@dataclass(frozen=True)
class Batch:
    """A batch of Kafka records as Arrow columns: what a transform reads and returns."""

    value: pa.Table
    key: pa.Table | None = None
    topic: pa.DictionaryArray | None = None
    partition: Column | None = None
    offset: Column | None = None
    timestamp: Column | None = None
    headers: Mapping[str, Column] = field(default_factory=dict)
    tombstone: Column | None = None

    @classmethod
    def of(
        cls, value: pa.Table, *, key: pa.Table | None = None, topic: str | Column | Sequence[str] | None = None,
        partition: int | Column | Sequence[int] | None = None, offset: int | Column | Sequence[int] | None = None,
        timestamp: Any = None, headers: Mapping[str, Any] | None = None, tombstone: Column | Sequence[bool] | None = None,
    ) -> Batch:
        """Build a batch; scalars are broadcast, integer timestamps are epoch milliseconds."""
        n = value.num_rows
        if key is not None and key.num_rows != n:
            raise ValueError(f"key has {key.num_rows} rows but value has {n}")
        return cls(
            value=value,
            key=key,
            topic=None if topic is None else topic_column(topic, n),
            partition=None if partition is None else _column(partition, n, pa.int32()),
            offset=None if offset is None else _column(offset, n, pa.int64()),
            timestamp=None if timestamp is None else _column(timestamp, n, TIMESTAMP_TYPE),
            headers={k: (v if isinstance(v, (pa.Array, pa.ChunkedArray)) else
                         pa.array(v) if isinstance(v, (list, tuple)) else pa.repeat(pa.scalar(v), n))
                     for k, v in (headers or {}).items()},
            tombstone=None if tombstone is None else _column(tombstone, n, pa.bool_()),
        )

    @property
    def num_rows(self) -> int:
        """Records in the batch."""
        return self.value.num_rows

    def replace(self, **changes: Any) -> Batch:
        """A copy with some parts replaced."""
        return dataclasses.replace(self, **changes)

    def filter(self, mask: Column) -> Batch:
        """Keep the records where ``mask`` is true (null counts as false)."""
        mask = pc.fill_null(mask, False)
        return Batch(
            value=self.value.filter(mask),
            key=None if self.key is None else self.key.filter(mask),
            topic=None if self.topic is None else pc.filter(self.topic, mask),
            partition=None if self.partition is None else pc.filter(self.partition, mask),
            offset=None if self.offset is None else pc.filter(self.offset, mask),
            timestamp=None if self.timestamp is None else pc.filter(self.timestamp, mask),
            headers={k: pc.filter(v, mask) for k, v in self.headers.items()},
            tombstone=None if self.tombstone is None else pc.filter(self.tombstone, mask),
        )

    def take(self, indices: pa.Array) -> Batch:
        """The records at ``indices``, in that order."""
        return Batch(
            value=self.value.take(indices),
            key=None if self.key is None else self.key.take(indices),
            topic=None if self.topic is None else pc.take(self.topic, indices),
            partition=None if self.partition is None else pc.take(self.partition, indices),
            offset=None if self.offset is None else pc.take(self.offset, indices),
            timestamp=None if self.timestamp is None else pc.take(self.timestamp, indices),
            headers={k: pc.take(v, indices) for k, v in self.headers.items()},
            tombstone=None if self.tombstone is None else pc.take(self.tombstone, indices),
        )

    def topics(self) -> list[str]:
        """The distinct topics present in the batch (empty when the topic is unknown)."""
        if self.topic is None or len(self.topic) == 0:
            return []
        used = pc.unique(self.topic.indices)
        return [self.topic.dictionary[i].as_py() for i in used.to_pylist() if i is not None]

    def split_by_topic(self) -> dict[str, Batch]:
        """One batch per topic, each in the original record order (for routed batches)."""
        names = self.topics()
        if len(names) <= 1:
            return {names[0]: self} if names else {}
        plain = self.topic.cast(pa.string())
        return {t: self.filter(pc.equal(plain, t)) for t in names}


def concat_ordered(first: Batch, second: Batch, first_mask: Column) -> Batch:
    """Interleave two batches back into one: row i comes from ``first`` where ``first_mask[i]``.

    Used after a transform ran on the records matching its predicate only. Columns present on one
    side only become nulls on the other; a column whose type differs on the two sides is an error
    (Arrow has one schema per batch, unlike Kafka's per-record schemas).
    """
    mask = np.asarray(pc.fill_null(first_mask, False).to_numpy(zero_copy_only=False), dtype=bool)
    positions = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
    inverse = np.empty_like(positions)
    inverse[positions] = np.arange(len(positions))
    order = pa.array(inverse)

    def tables(a: pa.Table | None, b: pa.Table | None, na: int, nb: int) -> pa.Table | None:
        if a is None and b is None:
            return None
        a = a if a is not None else _empty_rows(na)
        b = b if b is not None else _empty_rows(nb)
        return pa.concat_tables([a, b], promote_options="permissive")

    def cols(a: Column | None, b: Column | None, na: int, nb: int, typ: pa.DataType | None = None) -> Column | None:
        if a is None and b is None:
            return None
        typ = typ or (a.type if a is not None else b.type)
        a = a if a is not None else pa.nulls(na, typ)
        b = b if b is not None else pa.nulls(nb, typ)
        chunks = [*_chunks(a), *_chunks(b)]
        return pa.chunked_array(chunks, typ)

    na, nb = first.num_rows, second.num_rows
    topic = None
    if first.topic is not None or second.topic is not None:
        t = cols(None if first.topic is None else first.topic.cast(pa.string()),
                 None if second.topic is None else second.topic.cast(pa.string()), na, nb, pa.string())
        topic = pc.dictionary_encode(t.combine_chunks())
    names = list(dict.fromkeys([*first.headers, *second.headers]))
    header_types = {h: (first.headers.get(h) if h in first.headers else second.headers[h]).type for h in names}
    merged = Batch(
        value=tables(first.value, second.value, na, nb),
        key=tables(first.key, second.key, na, nb),
        topic=topic,
        partition=cols(first.partition, second.partition, na, nb, pa.int32()),
        offset=cols(first.offset, second.offset, na, nb, pa.int64()),
        timestamp=cols(first.timestamp, second.timestamp, na, nb, TIMESTAMP_TYPE),
        headers={h: cols(first.headers.get(h), second.headers.get(h), na, nb, header_types[h]) for h in names},
        tombstone=cols(first.tombstone, second.tombstone, na, nb, pa.bool_()),
    )
    return merged.take(order)


def _chunks(c: Column) -> list[pa.Array]:
    return list(c.chunks) if isinstance(c, pa.ChunkedArray) else [c]


def _empty_rows(n: int) -> pa.Table:
    """A table with no columns and ``n`` rows."""
    return pa.table({"_": pa.nulls(n)}).drop_columns(["_"])
