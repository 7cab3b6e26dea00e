"""The runners' transform hooks, without Kafka: metadata reaches the chain, offsets follow Filter, routing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from integrations.runtime import sink_runner, source_runner
from integrations.sources.base import SourceBatch
from integrations.transforms import TransformError, build_chain


def test_sink_hook_passes_metadata_and_filters_offsets():
    chain = build_chain([
        {"type": "Filter", "predicate": {"type": "HasHeaderKey", "name": "x"}, "negate": True},  # no headers: drops all
    ])
    table, offsets, routed = sink_runner._transformed(chain, pa.table({"a": [1, 2]}), "orders", 3, [10, 11])
    assert table.num_rows == 0 and offsets.to_pylist() == [] and routed is None
    chain = build_chain([{"type": "InsertField.Value", "topic_field": "t", "partition_field": "p",
                          "offset_field": "o!"}])
    table, offsets, routed = sink_runner._transformed(chain, pa.table({"a": [1, 2]}), "orders", 3, [10, 11])
    assert routed is None
    assert table.to_pylist() == [{"a": 1, "t": "orders", "p": 3, "o": 10}, {"a": 2, "t": "orders", "p": 3, "o": 11}]
    assert offsets.to_pylist() == [10, 11]


def test_sink_hook_returns_routed_topics():
    chain = build_chain([{"type": "RegexRouter", "regex": r"(.*)\.orders", "replacement": "$1_orders_v2"},
                         {"type": "InsertField.Value", "topic_field": "t"}])
    table, offsets, routed = sink_runner._transformed(chain, pa.table({"a": [1, 2]}), "eu.orders", 0, [5, 6])
    assert routed.to_pylist() == ["eu_orders_v2", "eu_orders_v2"]
    assert table.to_pylist() == [{"a": 1, "t": "eu_orders_v2"}, {"a": 2, "t": "eu_orders_v2"}]
    assert offsets.to_pylist() == [5, 6]
    # a router that leaves the name as it is routes nothing
    same = build_chain([{"type": "RegexRouter", "regex": "nomatch", "replacement": "x"}])
    assert sink_runner._transformed(same, pa.table({"a": [1]}), "orders", 0, [5])[2] is None


def test_sink_hook_timestamp_router_splits_by_day():
    chain = build_chain([{"type": "TimestampRouter", "topic_format": "${topic}-${timestamp}",
                          "timestamp_format": "yyyyMMdd"}])
    day = 86_400_000
    t0 = 1_709_985_600_000  # 2024-03-09T12:00Z
    msgs = [_Msg(t0), _Msg(t0 + day), _Msg(t0 + 1)]
    table, offsets, routed = sink_runner._transformed(chain, pa.table({"a": [1, 2, 3]}), "o", 0, [0, 1, 2], msgs)
    assert routed.to_pylist() == ["o-20240309", "o-20240310", "o-20240309"]
    assert offsets.to_pylist() == [0, 1, 2]


def test_sink_hook_refuses_a_record_without_topic():
    out = sink_runner.RecordBatch.of(pa.table({"a": [1, 2]}), topic=pa.array(["orders", None], pa.string()))
    with pytest.raises(TransformError, match="1 record.s. of orders without a topic"):
        sink_runner.routed_topics(out, "orders")


class _Msg:
    """The part of a confluent-kafka Message the runner reads for timestamps."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def timestamp(self) -> tuple[int, int]:
        return 1, self.ms


def test_source_hook_routes_per_topic():
    chain = build_chain([
        {"type": "RegexRouter", "regex": "orders", "replacement": "orders-eu"},
        {"type": "InsertField.Value", "topic_field": "routed_to"},
    ])
    out = source_runner._transformed(chain, SourceBatch({"table": "orders"}, "orders", pa.table({"a": [1]}), {"i": 1}))
    assert [(b.topic, b.records.to_pylist(), b.offset) for b in out] == [
        ("orders-eu", [{"a": 1, "routed_to": "orders-eu"}], {"i": 1})]


def test_source_hook_without_transforms_is_untouched():
    batch = SourceBatch({}, "t", pa.table({"a": [1]}), None)
    assert source_runner._transformed(build_chain([]), batch) == [batch]


def test_skipping_decode_drops_bad_positions_and_maps_kept_back():
    from integrations.sinks.base import Decoded

    def decode(msgs: list) -> Decoded:  # keeps every message it gets; values are the messages themselves
        return Decoded(pa.table({"v": msgs}), np.arange(len(msgs)), np.zeros(len(msgs), bool))

    d = sink_runner._skipping(decode, [1, 3])(["a", "b", "c", "d"])
    assert d.kept.tolist() == [1, 3] and d.rows.column("v").to_pylist() == ["b", "d"]
    none = sink_runner._skipping(decode, [])(["a", "b"])
    assert none.rows is None and none.kept.tolist() == []


@pytest.mark.parametrize("kind", ["avro", "json_schema"])
def test_sink_chain_reads_a_primitive_key_as_the_primitive_column(kind):
    """A primitive Avro / JSON-envelope key reaches the chain as ``__value__`` (as string keys do),
    so HoistField.Key wraps the key itself, not a ``value`` struct around it."""
    import uuid

    from integrations.config import TableSinkConfig
    from integrations.converters.base import PRIMITIVE_COLUMN

    conv = {"type": kind, **({"schema_registry_url": f"mock://{uuid.uuid4().hex[:8]}"} if kind == "avro" else {})}
    cfg = TableSinkConfig(name="k", type="table_sink", topics=["t"], connection_url="duckdb:///:memory:",
                          key_converter=conv)
    key_conv = sink_runner._chain_key_converter(cfg)
    raw = key_conv.encode_keys(pa.table({PRIMITIVE_COLUMN: pa.array(["a", "b"])}), [PRIMITIVE_COLUMN], "t")
    raw = [k.encode() if isinstance(k, str) else k for k in raw]  # as the consumer hands them over
    keys = sink_runner._keys([*raw, None], key_conv, "t")
    assert keys.column_names == [PRIMITIVE_COLUMN] and keys.column(0).to_pylist() == ["a", "b", None]
    chain = build_chain(cfg.model_copy(update={"transforms": [{"type": "HoistField.Key", "field": "id"}]}))
    out = chain.apply(sink_runner.RecordBatch.of(pa.table({"v": [1, 2, 3]}), topic="t", partition=0,
                                                 offset=pa.array([0, 1, 2]), key=keys))
    assert out.key.to_pylist() == [{"id": "a"}, {"id": "b"}, {"id": None}]
