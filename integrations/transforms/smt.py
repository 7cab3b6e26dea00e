"""Kafka Connect's single message transforms, each a function ``Batch -> Batch`` over Arrow columns.

Every builder takes a validated config model and returns a :class:`Step`. A step never loops over
records in Python: it selects, renames, casts or adds whole columns with ``pyarrow.compute``. Topic
routers work on the topic column's dictionary, so a regex runs once per distinct topic name.

This module maps each config model to its builder (:data:`BUILDERS`); the builders live by family:

- ``smt_step``: :class:`Step` and the column helpers the transforms share;
- ``smt_fields``: Cast, ExtractField, Flatten, HoistField, InsertField, MaskField, ReplaceField,
  SetSchemaMetadata, ValueToKey;
- ``smt_timestamps``: TimestampConverter;
- ``smt_routing``: RegexRouter, TimestampRouter;
- ``smt_headers``: DropHeaders, HeaderFrom, InsertHeader;
- ``smt_records``: Filter and user Python functions;
- ``unwrap``: Debezium's ExtractNewRecordState.

Every name these modules made public is still importable from here.
"""

from __future__ import annotations

from collections.abc import Callable

from integrations.transforms import unwrap as _unwrap
from integrations.transforms.batch import PRIMITIVE_COLUMN
from integrations.transforms.config import (
    CastConfig,
    DropHeadersConfig,
    ExtractFieldConfig,
    FilterConfig,
    FlattenConfig,
    HeaderFromConfig,
    HoistFieldConfig,
    InsertFieldConfig,
    InsertHeaderConfig,
    MaskFieldConfig,
    PythonTransformConfig,
    RegexRouterConfig,
    ReplaceFieldConfig,
    SetSchemaMetadataConfig,
    TimestampConverterConfig,
    TimestampRouterConfig,
    ValueToKeyConfig,
)
from integrations.transforms.smt_fields import (
    cast,
    extract_field,
    flatten,
    flatten_table,
    hoist_field,
    insert_field,
    mask_field,
    replace_field,
    set_schema_metadata,
    value_to_key,
)
from integrations.transforms.smt_headers import drop_headers, header_from, insert_header
from integrations.transforms.smt_records import filter_records, load_function, python_function
from integrations.transforms.smt_routing import regex_router, timestamp_router
from integrations.transforms.smt_step import BatchFn, Step
from integrations.transforms.smt_timestamps import convert_timestamps, timestamp_converter

BUILDERS: dict[type, Callable[..., Step]] = {
    CastConfig: cast, DropHeadersConfig: drop_headers, ExtractFieldConfig: extract_field,
    FilterConfig: filter_records, FlattenConfig: flatten, HeaderFromConfig: header_from,
    HoistFieldConfig: hoist_field, InsertFieldConfig: insert_field, InsertHeaderConfig: insert_header,
    MaskFieldConfig: mask_field, RegexRouterConfig: regex_router, ReplaceFieldConfig: replace_field,
    SetSchemaMetadataConfig: set_schema_metadata, TimestampConverterConfig: timestamp_converter,
    TimestampRouterConfig: timestamp_router, ValueToKeyConfig: value_to_key, PythonTransformConfig: python_function,
}
BUILDERS[_unwrap.ExtractNewRecordStateConfig] = _unwrap.build  # Debezium's unwrap SMT (integrations/transforms/unwrap.py)

__all__ = [
    "BUILDERS", "PRIMITIVE_COLUMN", "BatchFn", "Step", "cast", "convert_timestamps", "drop_headers", "extract_field",
    "filter_records", "flatten", "flatten_table", "header_from", "hoist_field", "insert_field", "insert_header",
    "load_function", "mask_field", "python_function", "regex_router", "replace_field", "set_schema_metadata",
    "timestamp_converter", "timestamp_router", "value_to_key",
]
