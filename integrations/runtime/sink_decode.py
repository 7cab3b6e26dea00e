"""Decode and transform consumed messages for a sink: values through the converter, keys, headers,
timestamps and tombstones as the transform chain needs them; failures tagged by Kafka Connect stage."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from confluent_kafka import Message

from integrations.converters.base import PRIMITIVE_COLUMN, Converter
from integrations.converters.factory import build_converter
from integrations.runtime.errors import KEY_CONVERTER, TRANSFORMATION, VALUE_CONVERTER, Failure
from integrations.sinks.base import Decoded, message_offsets, routes
from integrations.transforms import Batch as RecordBatch
from integrations.transforms import TransformChain, TransformError, primitive
from integrations.transforms.config import FilterConfig


def _chain_key_converter(config) -> Converter:
    """The key converter for a chain that reads keys: a primitive key (Avro ``"string"``, a non-struct
    JSON envelope) decodes into the chain's primitive column, as string and bytes keys do."""
    key_converter = build_converter(config.key_converter, is_key=True)
    if getattr(key_converter, "self_describing", False) and hasattr(key_converter, "field"):
        key_converter.field = PRIMITIVE_COLUMN
    return key_converter


def _transformed(
    chain: TransformChain, table: pa.Table, topic: str, partition: int, offs: list[int] | range,
    msgs: list | None = None, key_converter: Converter | None = None,
) -> tuple[pa.Table, pa.Array, pa.Array | None]:
    """Run the transform chain with the records' Kafka metadata; return the table, its offsets and the
    routed topic of each row (None when no record changed topic).

    The timestamp, key, headers and tombstone flags are read from ``msgs`` only when the chain needs
    them. Tombstones (kept in the batch as null rows only for a chain that reads the flag) that are
    still tombstones after the chain are dropped, as they are without transforms."""
    if isinstance(offs, range):  # consecutive offsets (the fast path): no Python ints
        offsets = pa.array(np.arange(offs.start, offs.stop, offs.step, dtype=np.int64))
    else:
        offsets = pa.array(offs, pa.int64())
    if not len(chain) or not len(offsets):
        return table, offsets, None
    meta = _metadata(chain.needs, msgs, key_converter, topic) if msgs is not None else {}
    out = chain.apply(RecordBatch.of(table, topic=topic, partition=partition, offset=offsets, **meta))
    value, offsets, routed = out.value, out.offset, routed_topics(out, topic)
    if out.tombstone is not None and out.num_rows and pc.any(out.tombstone).as_py():
        live = pc.invert(pc.fill_null(out.tombstone, False))
        value, offsets = value.filter(live), pc.filter(offsets, live)
        routed = None if routed is None else routed.filter(live)
    return value, offsets.combine_chunks() if isinstance(offsets, pa.ChunkedArray) else offsets, routed


def routed_topics(out: RecordBatch, topic: str) -> pa.Array | None:
    """The routed topic of each record of a transformed batch, or None when all kept ``topic``."""
    if out.topic is None:
        return None
    if out.topic.null_count:
        raise TransformError(f"a transform left {out.topic.null_count} record(s) of {topic} without a topic")
    if set(out.topics()) <= {topic}:
        return None
    names = out.topic.cast(pa.string())
    return names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names


def _metadata(needs: frozenset[str], msgs: list, key_converter: Converter | None, topic: str) -> dict[str, Any]:
    """``Batch.of`` arguments for the metadata the chain reads, collected from the raw messages."""
    out: dict[str, Any] = {}
    if "timestamp" in needs:
        stamps = [m.timestamp() for m in msgs]  # (type, ms); type 0 is TIMESTAMP_NOT_AVAILABLE
        out["timestamp"] = pa.array([ms if kind else None for kind, ms in stamps], pa.int64())
    if "tombstone" in needs:
        out["tombstone"] = pa.array([m.value() is None for m in msgs], pa.bool_())
    if "headers" in needs:
        out["headers"] = _headers(msgs)
    if "key" in needs:
        out["key"] = _keys([m.key() for m in msgs], key_converter, topic)
    return out


def _headers(msgs: list) -> dict[str, pa.Array]:
    """One column per header name (the last value wins); UTF-8 values as strings, others as binary."""
    cols: dict[str, list] = {}
    n = len(msgs)
    for i, m in enumerate(msgs):
        for name, value in m.headers() or ():
            cols.setdefault(name, [None] * n)[i] = value
    out = {}
    for name, values in cols.items():
        arr = pa.array(values, pa.binary())
        try:
            out[name] = arr.cast(pa.string())
        except pa.ArrowInvalid:
            out[name] = arr
    return out


def _is_object(key: bytes | None) -> bool:
    return key is None or key[:1] == b"{"


def _keys(keys: list[bytes | None], converter: Converter | None, topic: str) -> pa.Table:
    """Message keys as the chain's key table: a struct key's fields are columns, else one primitive column."""
    kind = getattr(converter, "class_name", "")
    if kind.endswith("JsonConverter") and not getattr(converter, "self_describing", False):
        if keys and all(map(_is_object, keys)):  # object keys: parsed in C, one batch
            blob = b"\n".join(b"{}" if k is None else k for k in keys)
            with contextlib.suppress(pa.ArrowInvalid):
                return pj.read_json(io.BytesIO(blob), read_options=pj.ReadOptions(block_size=max(1 << 20, len(blob) + 1)))
        parsed = [None if k is None else orjson.loads(k) for k in keys]
        if any(isinstance(k, dict) for k in parsed):
            if not all(k is None or isinstance(k, dict) for k in parsed):
                raise TransformError("the keys of one batch mix objects and primitive values")
            return pa.Table.from_pylist([k or {} for k in parsed])
        return primitive(pa.array(parsed))
    if converter is None or kind.endswith(("StringConverter", "ByteArrayConverter")):
        arr = pa.array(keys, pa.binary())
        return primitive(arr.cast(pa.string()) if kind.endswith("StringConverter") else arr)
    live = [i for i, k in enumerate(keys) if k is not None]
    table = converter.decode([keys[i] for i in live], None, topic)
    if len(live) == len(keys):
        return table
    pos = {j: i for i, j in enumerate(live)}
    return table.take(pa.array([pos.get(i) for i in range(len(keys))], pa.int64()))


_value, _error, _offset, _partition, _topic, _key = (Message.value, Message.error, Message.offset,
                                                     Message.partition, Message.topic, Message.key)


class _Staged(Exception):
    """A failure tagged with its Kafka Connect stage."""

    def __init__(self, stage: str, class_name: str, error: Exception) -> None:
        super().__init__(str(error))
        self.stage, self.class_name, self.error = stage, class_name, error


def _decoder(converter: Converter, transform: TransformChain, schema: pa.Schema | None, topic: str,
             partition: int):
    """decode + transform of a list of values (with their offsets), failures tagged by stage."""
    key_converter = getattr(converter, "key_converter", None)

    def run(vals: list[bytes], offs: list[int] | range, msgs: list | None = None
            ) -> tuple[pa.Table, pa.Array, pa.Array | None]:
        try:
            table = _decode_live(converter, vals, schema, topic)
        except Exception as e:
            raise _Staged(VALUE_CONVERTER, converter.class_name, e) from e
        try:
            return _transformed(transform, table, topic, partition, offs, msgs, key_converter)
        except Exception as e:
            raise _Staged(TRANSFORMATION, type(transform).__name__, e) from e
    return run


def _decode_live(converter: Converter, vals: list, schema: pa.Schema | None, topic: str) -> pa.Table:
    """Decode values; tombstones (None, kept only for a chain that reads them) become null rows."""
    if None not in vals:
        return converter.decode(vals, schema, topic)
    live = [i for i, v in enumerate(vals) if v is not None]
    table = converter.decode([vals[i] for i in live], schema, topic)
    if table.num_columns == 0:
        return pa.table({"_": pa.nulls(len(vals))}).drop_columns(["_"])
    pos = {j: i for i, j in enumerate(live)}
    return table.take(pa.array([pos.get(i) for i in range(len(vals))], pa.int64()))


def _message_decoder(converter: Converter, transform: TransformChain, schema: pa.Schema | None, topic: str,
                     partition: int, keys: bool = False) -> Callable[[list], Decoded]:
    """decode + transform of whole messages (for sinks that take them), failures tagged by stage.

    The chain sees the real offsets and, as ``chain.needs`` asks, timestamps, keys, headers and
    tombstone flags. Tombstones go through the chain (as null rows) when it reads the flag, has a
    Filter or routes (a routed tombstone deletes from its routed table), or when ``keys`` asks for
    the keys the chain makes; otherwise they bypass it and stay tombstones. Without transforms no
    chain work is done. With ``keys``, ``Decoded.keys`` holds the kept messages' keys."""
    key_converter = getattr(converter, "key_converter", None)
    through = "tombstone" in transform.needs or any(isinstance(c, FilterConfig) for c in transform.configs) \
        or routes(transform.configs) or keys
    needs = transform.needs | {"key"} if keys else transform.needs

    def run(msgs: list) -> Decoded:
        n = len(msgs)
        vals = list(map(_value, msgs))
        nulls = vals.count(None)
        has_tomb = nulls > 0
        tomb = np.fromiter((v is None for v in vals), dtype=bool, count=n) if has_tomb else np.zeros(n, bool)
        if not len(transform):  # the hot path: decode the values, keep every message
            live = [v for v in vals if v is not None] if has_tomb else vals
            try:
                rows = converter.decode(live, schema, topic) if live else None
            except Exception as e:
                raise _Staged(VALUE_CONVERTER, converter.class_name, e) from e
            try:
                key_table = _keys(list(map(_key, msgs)), key_converter, topic) if keys else None
            except Exception as e:
                raise _Staged(KEY_CONVERTER, getattr(key_converter, "class_name", "key converter"), e) from e
            return Decoded(rows, np.arange(n), tomb, keys=key_table, nulls=nulls)
        idx = np.arange(n) if through or not has_tomb else np.flatnonzero(~tomb)
        sub = msgs if len(idx) == n else [msgs[i] for i in idx]
        sub_vals = vals if len(idx) == n else [vals[i] for i in idx]
        if not sub:
            return Decoded(None, idx, tomb[idx], nulls=nulls)
        try:
            table = _decode_live(converter, sub_vals, schema, topic)
        except Exception as e:
            raise _Staged(VALUE_CONVERTER, converter.class_name, e) from e
        offs = message_offsets(sub)
        try:
            meta = _metadata(needs, sub, key_converter, topic)
            if through:
                meta["tombstone"] = pa.array(tomb[idx])
            out = transform.apply(RecordBatch.of(table, topic=topic, partition=partition, offset=pa.array(offs),
                                                 **meta))
            routed = routed_topics(out, topic)
        except Exception as e:
            raise _Staged(TRANSFORMATION, type(transform).__name__, e) from e
        kept_off = np.asarray(out.offset.to_numpy(), dtype=np.int64) if out.num_rows else np.empty(0, np.int64)
        kept = idx[np.searchsorted(offs, kept_off)]
        if out.tombstone is not None and out.num_rows:
            out_tomb = np.asarray(pc.fill_null(out.tombstone, False).to_numpy(zero_copy_only=False), dtype=bool)
        else:
            out_tomb = np.zeros(len(kept), dtype=bool)
        rows = out.value.filter(pa.array(~out_tomb)) if out_tomb.any() else out.value
        if not through and has_tomb:  # tombstones bypassed the chain: they are all kept
            dead = np.flatnonzero(tomb)
            kept = np.concatenate([kept, dead])
            out_tomb = np.concatenate([out_tomb, np.ones(len(dead), dtype=bool)])
            order = np.argsort(kept, kind="stable")
            kept, out_tomb = kept[order], out_tomb[order]
            if routed is not None:  # bypassing tombstones keep their source topic
                routed = pa.concat_arrays([routed, pa.array([topic] * len(dead), pa.string())]).take(pa.array(order))
        return Decoded(rows if rows.num_rows else None, kept, out_tomb, routed, out.key if keys else None, nulls)
    return run


def _skipping(decode: Callable[[list], Decoded], good: list[int]) -> Callable[[list], Decoded]:
    """A decode of the whole message list that drops every position not in ``good`` (the bad records)."""
    pos = np.asarray(good, dtype=np.int64)

    def run(msgs: list) -> Decoded:
        if not len(pos):
            return Decoded(None, pos, np.zeros(0, dtype=bool))
        d = decode([msgs[i] for i in good])
        return Decoded(d.rows, pos[d.kept], d.tombstone, d.topics, d.keys, d.nulls)
    return run


def _failure(m, e: BaseException) -> Failure:
    stage, cls, exc = (e.stage, e.class_name, e.error) if isinstance(e, _Staged) else (VALUE_CONVERTER, "", e)
    return Failure(stage, exc, cls, topic=m.topic(), partition=m.partition(), offset=m.offset(), key=m.key(),
                   value=m.value(), headers=list(m.headers() or []))
