"""A consumed batch holding an error event (a partition EOF) goes to the general path, never to a
SystemError: confluent-kafka's ``KafkaError == None`` leaves a TypeError set in C (seen in 2.16)."""

from __future__ import annotations

import confluent_kafka as ck

from integrations.runtime.sink_drain import _group_fast


def _msg(offset: int, error: ck.KafkaError | None = None) -> ck.Message:
    return ck.Message(topic="t", partition=0, offset=offset, value=b'{"id": %d}' % offset, error=error)


def test_a_batch_with_an_error_event_is_left_to_the_general_path():
    eof = ck.KafkaError(ck.KafkaError._PARTITION_EOF)
    msgs = [_msg(0), _msg(1), _msg(2, eof)]
    assert _group_fast(msgs, {("t", 0)}, {("t", 0): 10}, False, False) is None


def test_a_clean_batch_takes_the_fast_path():
    msgs = [_msg(0), _msg(1), _msg(2)]
    key, vals, offs, raw = _group_fast(msgs, {("t", 0)}, {("t", 0): 10}, False, False)
    assert key == ("t", 0) and offs == range(0, 3) and vals == [b'{"id": 0}', b'{"id": 1}', b'{"id": 2}']
    assert raw == msgs
