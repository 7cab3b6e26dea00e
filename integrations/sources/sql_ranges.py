"""Key ranges of one table read at once (connectorx-style), for the SQL source (``SqlSource`` mixes
this in): a bulk table split among tasks and/or sessions, and an incrementing table's first load in
ranges with per-range progress in its offset. See the module doc of ``integrations.sources.sql``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from integrations.config import resolve_url
from integrations.runtime.tasks import key_range
from integrations.sources.base import SourceBatch
from integrations.sources.sql_reader import SqlReader
from integrations.sources.sql_streams import merge_streams

log = logging.getLogger("headrace.source.sql")


class KeyRanges:
    """Range reads of ``SqlSource``: uses its ``config``, ``reader``, ``split``, ``read_ranges``,
    ``_extra``, ``_use_adbc``, ``_columns``, ``_guarded`` and ``_empty``."""

    def _bulk_tables(self, src: sa.FromClause, stmt: sa.Select, name: str, limit: int | None
                     ) -> Iterator[pa.Table]:
        """A bulk read of ``stmt``: this task's key ranges, read at once when there are several."""
        stmts = [stmt] if limit else self._bulk_ranges(src, stmt, name)
        if len(stmts) <= 1:
            for s in stmts:
                yield from self.reader.stream(s, self.config.batch_max_rows)
            return
        readers = [self.reader, *self._readers(len(stmts) - 1)]
        yield from merge_streams([r.stream(s, self.config.batch_max_rows, background=False)
                                  for r, s in zip(readers, stmts, strict=True)])

    def _key_column(self, src: sa.FromClause) -> sa.ColumnElement[Any] | None:
        """The integer column a bulk table is split on (None: the table has none)."""
        c = self.config
        names = [n for n in (c.incrementing_column, *c.key_columns[:1]) if n]
        if isinstance(src, sa.Table) and len(src.primary_key.columns) == 1:
            names.append(next(iter(src.primary_key.columns)).name)
        for n in names:
            if n in src.c and isinstance(src.c[n].type, sa.Integer):
                return src.c[n]
        return None

    def _bulk_ranges(self, src: sa.FromClause, stmt: sa.Select, name: str) -> list[sa.Select]:
        """The statements of this task's key ranges of a bulk table ([] when it reads none of it)."""
        index, tasks = self.split
        parts = tasks * self.read_ranges
        if parts == 1:
            return [stmt]
        key = self._key_column(src)
        if key is None:
            if index == 0:
                log.warning("connector %s: table %r has no integer key column to split on; task 0 reads it "
                            "whole", self.config.name, name)
            return [stmt] if index == 0 else []
        low, high = self.reader.row(sa.select(sa.func.min(key), sa.func.max(key)).select_from(src))
        if low is None:  # empty, or every key NULL
            return [stmt] if index == 0 else []
        out = []
        for j in range(self.read_ranges):
            i = index * self.read_ranges + j
            span = key_range(int(low), int(high), parts, i)
            if span is None and i != 0:
                continue
            cond = key.between(*span) if span is not None else sa.false()
            out.append(stmt.where(sa.or_(cond, key.is_(None)) if i == 0 else cond))
        return out

    def _first_load_in_ranges(self, src: sa.FromClause, offset: dict[str, Any], limit: int | None) -> bool:
        """True when an incrementing table's first load (or one in progress) is read in key ranges."""
        if "snapshot" in offset:
            return True
        return (self.read_ranges > 1 and "incrementing" not in offset and not limit
                and isinstance(src.c[self.config.incrementing_column].type, sa.Integer))

    def _ranged_first_load(self, src: sa.FromClause, partition: dict[str, Any], topic: str,
                           offset: dict[str, Any], safe_inc: Any, samples: list[list[Any]] | None
                           ) -> Iterator[SourceBatch]:
        """The first load of an incrementing table in ``read_ranges`` key ranges read at once.

        The load covers ids up to ``upto``: the guard's safe id (every id at or below it was committed
        before the oldest open transaction began), or ``max(id)`` unguarded. While it runs the offset is
        ``{"snapshot": {"upto": u, "ranges": [[lo, hi, done], ...]}}``, each batch moving its own range's
        ``done``, so a retry resumes every range where it stopped (no row skipped or read twice). Its
        last batch stores ``{"incrementing": upto}``, where the incremental polls go on from."""
        inc = src.c[self.config.incrementing_column]
        snap = offset.get("snapshot")
        if snap is None:
            low, top = self.reader.row(sa.select(sa.func.min(inc), sa.func.max(inc)).select_from(src))
            upto = safe_inc if self._guarded() else top
            if low is None or upto is None or upto < low:
                return
            spans = [key_range(int(low), int(upto), self.read_ranges, i) for i in range(self.read_ranges)]
            snap = {"upto": upto, "ranges": [[lo, hi, lo - 1] for lo, hi in (x for x in spans if x)]}
        snap = {"upto": snap["upto"], "ranges": [list(r) for r in snap["ranges"]]}
        todo = [i for i, (_lo, hi, done) in enumerate(snap["ranges"]) if done < hi]
        cols = self._columns(src)

        def tagged(i: int, reader: SqlReader) -> Iterator[tuple[int, pa.Table]]:
            _lo, hi, done = snap["ranges"][i]
            stmt = sa.select(*cols).where(inc > done, inc <= hi).order_by(inc)
            for table in reader.stream(stmt, self.config.batch_max_rows, background=False):
                yield i, table

        readers = [self.reader, *self._readers(len(todo) - 1)] if todo else []
        extra = {"safe_samples": samples} if samples is not None else {}
        if todo:
            for i, table in merge_streams([tagged(i, r) for i, r in zip(todo, readers, strict=True)]):
                if table.num_rows == 0:
                    continue
                snap["ranges"][i][2] = table.column(inc.name)[-1].as_py()
                state = {"snapshot": {"upto": snap["upto"], "ranges": [list(r) for r in snap["ranges"]]}, **extra}
                yield SourceBatch(partition, topic, table, state)
        yield SourceBatch(partition, topic, self._empty(src), {"incrementing": snap["upto"], **extra})

    def _readers(self, n: int) -> list[SqlReader]:
        """``n`` more sessions for parallel range reads (opened once, closed with the source)."""
        while len(self._extra) < n:
            self._extra.append(SqlReader(resolve_url(self.config.connection_url), use_adbc=self._use_adbc,
                                         numeric_mapping=self.config.numeric_mapping, read_only=True))
        return self._extra[:n]
