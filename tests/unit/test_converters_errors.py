"""The error handler's contract without a broker: tolerance, counts, context headers, source rejects."""

from __future__ import annotations

import pyarrow as pa
import pytest

from integrations.runtime.error_config import ErrorSettings
from integrations.runtime.errors import ErrorHandler, Failure, RecordError, Rejected
from integrations.runtime.source_runner import _report_rejects
from integrations.sources.base import SourceBatch


def _batch_with_rejects() -> SourceBatch:
    batch = SourceBatch({"file": "a.csv"}, "t", pa.table({"x": [1]}), {"position": 3})
    batch.rejects = [Rejected(b"1,2,\"unterminated", ValueError("unterminated quote"), "line 2")]
    return batch


def test_rejects_stop_under_none_and_are_counted_under_all():
    strict = ErrorHandler(ErrorSettings(), "c")
    with pytest.raises(RecordError, match=r"TASK_POLL failed for the record at topic t partition "
                                          r"\{\"file\":\"a.csv\"\}.*unterminated quote.*errors_tolerance is 'none'"):
        _report_rejects(_batch_with_rejects(), strict, '{"file":"a.csv"}', "CsvSource")
    lenient = ErrorHandler(ErrorSettings(errors_tolerance="all", errors_log_enable=True), "c")
    _report_rejects(_batch_with_rejects(), lenient, '{"file":"a.csv"}', "CsvSource")
    assert (lenient.failed, lenient.dead_lettered) == (1, 0)  # no dlq_topic: skipped, counted


def test_context_headers_follow_kafka_connect():
    h = ErrorHandler(ErrorSettings(), "orders-sink")
    try:
        raise ValueError("bad value")
    except ValueError as e:
        err = e
    headers = dict(h.headers(Failure("VALUE_CONVERTER", err, "org.apache.kafka.connect.json.JsonConverter",
                                     topic="orders", partition=2, offset=41)))
    assert {k: v.decode() for k, v in headers.items() if k != "__connect.errors.exception.stacktrace"} == {
        "__connect.errors.topic": "orders", "__connect.errors.partition": "2", "__connect.errors.offset": "41",
        "__connect.errors.connector.name": "orders-sink", "__connect.errors.task.id": "0",
        "__connect.errors.stage": "VALUE_CONVERTER",
        "__connect.errors.class.name": "org.apache.kafka.connect.json.JsonConverter",
        "__connect.errors.exception.class.name": "ValueError", "__connect.errors.exception.message": "bad value",
    }
    assert headers["__connect.errors.exception.stacktrace"].decode().startswith("Traceback")
