"""The :class:`Step` every single message transform builds, and the column helpers they share.

A step is a function ``Batch -> Batch`` plus the record parts (topic, headers, key...) it reads
besides the value. The helpers lift a table function onto the key or the value and read, replace or
flatten struct columns, raising :class:`TransformError` with the record's field names when a named
field is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from integrations.transforms.batch import Batch, Column
from integrations.transforms.errors import TransformError

BatchFn = Callable[[Batch], Batch]


@dataclass(frozen=True)
class Step:
    """One configured transform: its function and the record parts it reads besides the value."""

    name: str
    fn: BatchFn
    needs: frozenset[str] = frozenset()


def _on_part(part: str, fn: Callable[[pa.Table, Batch], pa.Table]) -> BatchFn:
    """Lift a table function to a batch function on the key or the value; a missing key passes through."""
    if part == "value":
        return lambda b: b.replace(value=fn(b.value, b))

    def on_key(b: Batch) -> Batch:
        return b if b.key is None else b.replace(key=fn(b.key, b))

    return on_key


def _column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise TransformError(f"{what} {name!r} is not in the record (fields: {', '.join(table.column_names) or 'none'})")
    return table.column(name)


def _set_column(table: pa.Table, name: str, col: Column) -> pa.Table:
    """Replace a column in place, or append it when absent."""
    i = table.schema.get_field_index(name)
    if i >= 0:
        return table.set_column(i, name, col)
    return table.append_column(name, col)


def _struct_children(col: pa.ChunkedArray) -> list[tuple[str, pa.ChunkedArray]]:
    """The fields of a struct column, each null where the struct itself is null."""
    names = [col.type.field(i).name for i in range(col.type.num_fields)]
    return list(zip(names, col.flatten(), strict=True))


def _table_from_struct(col: pa.ChunkedArray) -> pa.Table:
    children = _struct_children(col)
    if not children:
        return pa.table({"_": pa.nulls(len(col))}).drop_columns(["_"])
    return pa.table(dict(children))
