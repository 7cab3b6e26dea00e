"""Debezium's ``ExtractNewRecordState`` (the "unwrap" SMT), vectorised over a batch of change events.

A Debezium envelope (``before``, ``after``, ``source``, ``op``, ``ts_ms``) becomes the flat new row
(``after``'s fields), which is what a table sink upserts. Deletes and tombstones follow Debezium's
``delete.handling.mode`` and ``drop.tombstones``:

* ``delete_handling_mode: drop`` (Debezium's default) drops delete events; ``none`` turns them into
  tombstones (a null value: a sink with ``delete_enabled`` deletes the key); ``rewrite`` keeps them as
  the old row (``before``) with ``__deleted: "true"`` (every other row gets ``"false"``).
* ``drop_tombstones`` (default true, as Debezium) drops the tombstones that follow deletes.
* Truncate events (op ``t``) have no row and are dropped (a flat row cannot say "empty the table").
* ``add_fields``: ``op``, ``table``, ``schema``, ``db``, ``lsn``, ``txId``, ``ts_ms`` or ``source.<field>``,
  added as ``__<name>`` columns (dots become underscores), as Debezium's ``add.fields``.

Records that are not envelopes (no ``op`` column) pass through unchanged.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.transforms.batch import Batch, is_primitive
from integrations.transforms.config import ExtractNewRecordStateConfig

__all__ = ["ExtractNewRecordStateConfig", "build", "unwrap"]


_SOURCE = {"table", "schema", "db", "lsn", "txId", "snapshot", "name", "connector"}


def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def unwrap(cfg: ExtractNewRecordStateConfig, batch: Batch) -> Batch:
    """Apply the transform to one batch (see the module docstring)."""
    value = batch.value
    n = batch.num_rows
    tomb = np.zeros(n, dtype=bool) if batch.tombstone is None else _mask(batch.tombstone)
    if is_primitive(value) or "op" not in value.column_names:
        if is_primitive(value) and value.column(0).null_count == n:  # tombstones produced by the CDC source
            tomb[:] = True
            return batch.filter(pa.array(np.zeros(n, bool))) if cfg.drop_tombstones else \
                batch.replace(tombstone=pa.array(tomb))
        return batch
    op = value.column("op")
    tomb |= _mask(pc.is_null(op))
    is_d = _mask(pc.equal(op, "d"))
    is_t = _mask(pc.equal(op, "t"))
    keep = ~is_t & ~(tomb & cfg.drop_tombstones) & ~(is_d & (cfg.delete_handling_mode == "drop"))
    new_tomb = tomb | (is_d & (cfg.delete_handling_mode == "none"))
    state = _row_state(value, is_d if cfg.delete_handling_mode == "rewrite" else np.zeros(n, bool))
    if cfg.delete_handling_mode == "rewrite":
        state = state.append_column("__deleted", pa.array(np.where(is_d, "true", "false"), pa.string()))
    for f in cfg.add_fields:
        state = state.append_column("__" + f.replace(".", "_"), _field(value, f))
    out = batch.replace(value=state, tombstone=pa.array(new_tomb))
    return out if keep.all() else out.filter(pa.array(keep))


def _row_state(value: pa.Table, use_before: np.ndarray) -> pa.Table:
    """``after``'s fields as columns (``before``'s where ``use_before``); a batch without rows keeps none."""
    after = value.column("after").combine_chunks() if "after" in value.column_names else None
    if after is None or not pa.types.is_struct(after.type):
        before = value.column("before").combine_chunks() if "before" in value.column_names else None
        if before is not None and pa.types.is_struct(before.type) and use_before.any():
            after = pa.nulls(len(before), before.type)
        else:
            return pa.table({"_": pa.nulls(value.num_rows)}).drop_columns(["_"])
    if use_before.any():
        before = value.column("before").combine_chunks()
        if pa.types.is_struct(before.type):
            cols = {}
            for i, f in enumerate(after.type):
                b = before.field(f.name) if before.type.get_field_index(f.name) >= 0 else pa.nulls(len(after), f.type)
                a = after.field(i)
                if b.type != a.type:
                    b = b.cast(a.type)
                cols[f.name] = pc.if_else(pa.array(use_before), b, a)
            return pa.table(cols)
    return pa.Table.from_arrays(after.flatten(), names=[f.name for f in after.type])


def _field(value: pa.Table, name: str) -> pa.Array:
    """An envelope field for ``add_fields``: top-level (``op``, ``ts_ms``) or of ``source``."""
    if name.startswith("source."):
        name, top = name.split(".", 1)[1], False
    else:
        top = name in ("op", "ts_ms")
    if top:
        return value.column(name).combine_chunks()
    src = value.column("source").combine_chunks()
    if name not in _SOURCE and src.type.get_field_index(name) < 0:
        raise ValueError(f"add_fields: the envelope has no field {name!r}")
    return src.field(name) if src.type.get_field_index(name) >= 0 else pa.nulls(len(src))


def build(cfg: ExtractNewRecordStateConfig):  # noqa: ANN201 (a transforms.smt.Step; imported lazily: cycle)
    """The transform step (it reads the tombstone flags, so sinks pass tombstones through it)."""
    from integrations.transforms.smt import Step

    return Step(cfg.type, lambda b: unwrap(cfg, b), frozenset({"tombstone"}))
