"""Truncate events for the table sink (``truncate_enabled``, Debezium JDBC sink's ``truncate.enabled``).

A change-data-capture truncate (a Debezium envelope with ``op: "t"``, as ``postgres_cdc`` and Debezium
produce) has a null key and no row, so the unwrap transform cannot turn it into a row: the table sink
looks for it in the raw messages instead. Only messages with a null key and a value are decoded
here (with the connector's value converter, no transforms); in a change topic those are the
truncates alone, so the cost is nil for every other record.

Partial: the table emptied is the one ``table_name_format`` names for the message's own topic
(routing transforms are not applied to truncates), and ordering is per topic partition, as for
every other event: a change topic with several partitions can apply a truncate before changes of
other partitions that preceded it in the database (Debezium's JDBC sink has the same limit).
"""

from __future__ import annotations

import logging

import pyarrow.compute as pc

from integrations.converters.factory import build_converter

log = logging.getLogger("headrace.sink")


class TruncateEvents:
    """Finds truncate events in a list of consumed messages."""

    def __init__(self, config: object) -> None:
        self.converter = build_converter(config.value_converter)

    def first(self, topic: str, messages: list) -> int | None:
        """The position of the first truncate event in ``messages``, or None."""
        candidates = [i for i, m in enumerate(messages) if m.key() is None and m.value() is not None]
        if not candidates:
            return None
        try:
            table = self.converter.decode([messages[i].value() for i in candidates], None, topic)
        except Exception:  # noqa: BLE001 - not envelopes: the normal path reports bad records
            return None
        if "op" not in table.column_names:
            return None
        hits = pc.fill_null(pc.equal(table.column("op"), "t"), False).to_pylist()
        return next((candidates[j] for j, hit in enumerate(hits) if hit), None)
