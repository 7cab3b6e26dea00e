"""Table sink logic without a broker: last event per key, key decoding, config rules (SQLite and DuckDB)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from integrations.config import TableSinkConfig
from integrations.converters.config import ConverterConfig
from integrations.converters.factory import build_converter
from integrations.runtime.sink_runner import _keys
from integrations.sinks.table import TableSink, TableSinkError, _by_target, _key_columns, _Pending, quote


def test_last_event_per_key_wins_and_tombstones_become_deletes():
    keys = pa.table({"id": [1, 2, 1, 3, 2, 3]})
    live = np.array([True, True, True, True, False, True])
    values = pa.table({"id": [1, 2, 1, 3, 3], "v": ["a", "b", "c", "d", "e"]})
    rows, deletes = TableSink._events(values, keys, live, dedup=True)
    assert rows.to_pydict() == {"id": [1, 3], "v": ["c", "e"]}
    assert deletes.to_pydict() == {"id": [2]}


def _json_keys(keys: list) -> pa.Table:
    return _keys(keys, build_converter(ConverterConfig(type="json"), is_key=True), "t")


def test_key_columns_objects_and_primitives():
    objects = _json_keys([b'{"a": 1, "b": "x"}', b'{"a": 2, "b": "y"}'])
    assert _key_columns(objects, []).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
    assert _key_columns(_json_keys([b"7", b"8"]), ["id"]).to_pydict() == {"id": [7, 8]}
    with pytest.raises(TableSinkError, match="exactly one pk_fields"):
        _key_columns(_json_keys([b"7"]), [])
    with pytest.raises(TableSinkError, match="null key"):
        _key_columns(_json_keys([b"7", None]), ["id"])
    with pytest.raises(TableSinkError, match="null key"):
        _key_columns(_json_keys([b'{"a": 1}', None]), ["a"])
    with pytest.raises(TableSinkError, match=r"pk_fields \['c'\] are not in the message key"):
        _key_columns(objects, ["c"])


def test_quote_doubles_quotes():
    assert quote('a"b') == '"a""b"'


@pytest.mark.parametrize(("kw", "msg"), [
    ({"insert_mode": "upsert"}, "needs a primary key"),
    ({"pk_mode": "record_value"}, "needs 'pk_fields'"),
    ({"delete_enabled": True, "pk_mode": "record_value", "pk_fields": ["id"]}, "delete_enabled needs pk_mode"),
    ({"pk_mode": "kafka", "pk_fields": ["a"]}, "takes 3 pk_fields"),
])
def test_table_config_rules(kw, msg):
    with pytest.raises(ValidationError, match=msg):
        TableSinkConfig(type="table_sink", name="x", topics=["t"], **kw)
    assert TableSinkConfig(type="table_sink", name="x", topics=["t"], table_name_format="raw_${topic}").table_for(
        "orders") == "raw_orders"


def test_messages_are_grouped_by_routed_topic_in_order_of_appearance():
    assert _by_target(None, "t", 3) == [("t", None)]
    assert _by_target(None, "t", 0) == []
    assert _by_target(pa.array(["x", "x"]), "t", 2) == [("x", None)]
    groups = _by_target(pa.array(["a", "b", "a"]), "t", 3)
    assert [(name, mask.tolist()) for name, mask in groups] == [("a", [True, False, True]), ("b", [False, True, False])]


def test_pending_routed_fills_unrouted_deliveries_with_the_source_topic():
    from integrations.sinks.base import Decoded

    class M:
        def __init__(self, off: int) -> None:
            self.off = off

        def offset(self) -> int:
            return self.off

        def key(self) -> None:
            return None

    buf = _Pending()
    buf.add(Decoded(pa.table({"a": [1, 2]}), np.array([0, 1]), np.zeros(2, bool)), [M(0), M(1)])
    assert buf.routed("t") is None
    buf.add(Decoded(pa.table({"a": [3]}), np.array([1]), np.zeros(1, bool), pa.array(["r"])), [M(2), M(3)])
    assert buf.routed("t").to_pylist() == ["t", "t", "r"]
    assert buf.next_offset == 4  # past the dropped message at offset 2
