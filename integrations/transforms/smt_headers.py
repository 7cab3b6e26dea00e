"""Header transforms: DropHeaders, HeaderFrom and InsertHeader."""

from __future__ import annotations

import pyarrow as pa
import yaml

from integrations.transforms.batch import Batch
from integrations.transforms.config import DropHeadersConfig, HeaderFromConfig, InsertHeaderConfig
from integrations.transforms.smt_step import Step, _column


def drop_headers(cfg: DropHeadersConfig) -> Step:
    """DropHeaders: remove the named headers."""
    dropped = set(cfg.headers)
    return Step(cfg.type, lambda b: b.replace(headers={k: v for k, v in b.headers.items() if k not in dropped}),
                frozenset({"headers"}))


def header_from(cfg: HeaderFromConfig) -> Step:
    """HeaderFrom: copy or move key/value fields into headers (paired by position)."""
    part = cfg.record_part

    def apply(b: Batch) -> Batch:
        table = b.value if part == "value" else b.key
        if table is None:
            return b
        headers = dict(b.headers)
        for f, h in zip(cfg.fields, cfg.headers, strict=True):
            headers[h] = _column(table, f, "field")
        if cfg.operation == "move":
            table = table.drop_columns(list(cfg.fields))
        return b.replace(headers=headers, **{part: table})

    return Step(cfg.type, apply, frozenset({"headers"} | ({"key"} if part == "key" else set())))


def _literal(value: object) -> object:
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, (int, float, bool, list, dict)) or parsed is None else value
    return value


def insert_header(cfg: InsertHeaderConfig) -> Step:
    """InsertHeader: every record gets header ``header`` = ``value_literal`` (typed like Kafka's Values.parse)."""
    value = _literal(cfg.value_literal)
    scalar = pa.scalar(value) if value is not None else pa.scalar(None, pa.null())

    def apply(b: Batch) -> Batch:
        return b.replace(headers={**b.headers, cfg.header: pa.repeat(scalar, b.num_rows)})

    return Step(cfg.type, apply, frozenset({"headers"}))
