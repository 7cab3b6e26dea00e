"""Error-handling settings shared by every connector (Kafka Connect's ``errors.*`` properties)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class ErrorSettings(BaseModel):
    """``errors_tolerance``, retries, error logging and the dead-letter topic."""

    errors_tolerance: Annotated[
        Literal["none", "all"],
        Field(description="none: a bad record stops the connector; all: it is skipped (and dead-lettered)"),
    ] = "none"
    errors_retry_timeout: Annotated[
        float, Field(ge=-1, description="Seconds to keep retrying transient failures (0: no retry, -1: forever)")
    ] = 0.0
    connection_retry_timeout: Annotated[
        float, Field(ge=-1, description="Seconds to keep reconnecting after a lost database connection (reset, "
                                        "pg_terminate_backend, server restart), whatever errors_retry_timeout "
                                        "says (-1: forever; 0: only errors_retry_timeout applies)")
    ] = 300.0
    errors_retry_delay_max: Annotated[
        float, Field(gt=0, description="Upper bound of the exponential backoff between retries, seconds")
    ] = 60.0
    errors_log_enable: Annotated[bool, Field(description="Log every failed record (tolerated or not)")] = False
    errors_log_include_messages: Annotated[
        bool, Field(description="Include the record's key and value in those log lines")
    ] = False
    dlq_topic: Annotated[
        str | None, Field(description="Dead-letter topic for failed records (used with errors_tolerance: all)")
    ] = None
    dlq_context_headers_enable: Annotated[
        bool, Field(description="Add __connect.errors.* context headers to dead-lettered records")
    ] = True
    dlq_topic_replication_factor: Annotated[int, Field(gt=0, le=10)] = 1
    dlq_max_records: Annotated[
        int, Field(ge=0, description="Asset check threshold: a run dead-lettering more records fails the check")
    ] = 0

    @field_validator("dlq_topic")
    @classmethod
    def _legal_topic(cls, v: str | None) -> str | None:
        if v is not None and (not _TOPIC_RE.match(v) or v in (".", "..")):
            raise ValueError(f"{v!r} is not a legal Kafka topic name ([A-Za-z0-9._-], not '.' or '..')")
        return v
