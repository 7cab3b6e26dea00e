"""The runners' transform hooks, without Kafka: metadata reaches the chain, offsets follow Filter, routing."""

from __future__ import annotations

import pyarrow as pa
import pytest

from integrations.runtime import sink_runner, source_runner
from integrations.sources.base import SourceBatch
from integrations.transforms import TransformError, build_chain


def test_sink_hook_passes_metadata_and_filters_offsets():
    chain = build_chain([
        {"type": "Filter", "predicate": {"type": "HasHeaderKey", "name": "x"}, "negate": True},  # no headers: drops all
    ])
    table, offsets = sink_runner._transformed(chain, pa.table({"a": [1, 2]}), "orders", 3, [10, 11])
    assert table.num_rows == 0 and offsets.to_pylist() == []
    chain = build_chain([{"type": "InsertField.Value", "topic_field": "t", "partition_field": "p",
                          "offset_field": "o!"}])
    table, offsets = sink_runner._transformed(chain, pa.table({"a": [1, 2]}), "orders", 3, [10, 11])
    assert table.to_pylist() == [{"a": 1, "t": "orders", "p": 3, "o": 10}, {"a": 2, "t": "orders", "p": 3, "o": 11}]
    assert offsets.to_pylist() == [10, 11]


def test_sink_hook_refuses_routing():
    chain = build_chain([{"type": "RegexRouter", "regex": "(.*)", "replacement": "x-$1"}])
    with pytest.raises(TransformError, match="not supported by sinks yet"):
        sink_runner._transformed(chain, pa.table({"a": [1]}), "orders", 0, [5])


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
