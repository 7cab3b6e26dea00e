"""Kafka Connect's JSON for nested values: maps with non-string keys, and non-finite floats.

Kafka Connect's JsonConverter writes a map whose key schema is ``string`` as a JSON object and any
other map as an array of two-element arrays: ``{1: "a", 2: "b"}`` becomes ``[[1,"a"],[2,"b"]]``.
It writes NaN and ±Infinity, which JSON has no numbers for, as the strings ``"NaN"``, ``"Infinity"``
and ``"-Infinity"`` (Jackson's default), at any depth. These helpers build DuckDB SQL expressions
(vectorised; no Python per row) that write such values at any depth inside lists, structs and
string-keyed maps, and read the maps back.
"""

from __future__ import annotations

import itertools

import duckdb
import orjson
import pyarrow as pa

from integrations.converters.base import nested_has

_names = itertools.count()


def keyed_map(t: pa.DataType) -> bool:
    """True for a map whose keys are not strings (written as pairs)."""
    return pa.types.is_map(t) and not (pa.types.is_string(t.key_type) or pa.types.is_large_string(t.key_type))


def has_pairs(t: pa.DataType) -> bool:
    """True when ``t`` holds a non-string-keyed map anywhere."""
    return nested_has(t, keyed_map)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _var() -> str:
    return f"hr_x{next(_names)}"


def nonfinite_json_sql(e: str, t: pa.DataType | None = None) -> str:
    """SQL for float ``e`` as JSON, with NaN and ±Infinity as the strings Kafka Connect writes (a
    float32 in its shortest form, not widened to double digits)."""
    finite = f"CAST({e} AS VARCHAR)::JSON" if t is not None and pa.types.is_float32(t) else f"to_json({e})"
    return (f"CASE WHEN isnan({e}) THEN '\"NaN\"'::JSON WHEN isinf({e}) AND {e} > 0 THEN '\"Infinity\"'::JSON "
            f"WHEN isinf({e}) THEN '\"-Infinity\"'::JSON ELSE {finite} END")


def to_pairs_sql(e: str, t: pa.DataType, quote_floats: bool = False, pairs: bool = True) -> str:
    """SQL for value ``e`` of payload type ``t`` with every non-string-keyed map as a list of JSON pairs
    (unless ``pairs`` is False) and, with ``quote_floats``, every float as JSON with NaN and ±Infinity
    quoted."""
    def rewrites(u: pa.DataType) -> bool:
        return (pairs and keyed_map(u)) or (quote_floats and pa.types.is_floating(u))

    if not nested_has(t, rewrites):
        return e
    if pa.types.is_floating(t):
        return nonfinite_json_sql(e, t)
    x = _var()
    if pa.types.is_map(t):
        k = to_pairs_sql(f"{x}.key", t.key_type, quote_floats, pairs)
        v = to_pairs_sql(f"{x}.value", t.item_type, quote_floats, pairs)
        if pairs and keyed_map(t):
            return f"list_transform(map_entries({e}), lambda {x}: json_array({k}, {v}))"
        return f"map_from_entries(list_transform(map_entries({e}), lambda {x}: {{'key': {k}, 'value': {v}}}))"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list_transform({e}, lambda {x}: {to_pairs_sql(x, t.value_type, quote_floats, pairs)})"
    fields = ", ".join(f"{_q(f.name)} := {to_pairs_sql(f'({e}).{_q(f.name)}', f.type, quote_floats, pairs)}"
                       for f in t)
    return f"CASE WHEN {e} IS NULL THEN NULL ELSE struct_pack({fields}) END"


def from_pairs_sql(e: str, t: pa.DataType, duck_type) -> str:
    """SQL turning ``e`` (parsed with ``structure_type``: pair maps left as JSON) into DuckDB type ``t``.

    ``duck_type`` maps an Arrow payload type to its DuckDB type name.
    """
    if not has_pairs(t):
        return e
    x = _var()
    if keyed_map(t):
        def part(i: int, pt: pa.DataType) -> str:
            parsed = f"json_transform_strict({x}->{i}, {_structure(pt, duck_type)})"
            return from_pairs_sql(parsed, pt, duck_type)
        return (f"map_from_entries(list_transform(json_transform_strict({e}, '[\"JSON\"]'), "
                f"lambda {x}: {{'key': {part(0, t.key_type)}, 'value': {part(1, t.item_type)}}}))")
    if pa.types.is_map(t):
        v = from_pairs_sql(f"{x}.value", t.item_type, duck_type)
        return f"map_from_entries(list_transform(map_entries({e}), lambda {x}: {{'key': {x}.key, 'value': {v}}}))"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list_transform({e}, lambda {x}: {from_pairs_sql(x, t.value_type, duck_type)})"
    fields = ", ".join(f"{_q(f.name)} := {from_pairs_sql(f'({e}).{_q(f.name)}', f.type, duck_type)}" for f in t)
    return f"CASE WHEN {e} IS NULL THEN NULL ELSE struct_pack({fields}) END"


def structure_type(t: pa.DataType, duck_type) -> str:
    """The DuckDB type to parse ``t`` with ``json_transform_strict``: pair maps stay raw ``JSON``."""
    if keyed_map(t):
        return "JSON"
    if not has_pairs(t):
        return duck_type(t)
    if pa.types.is_map(t):
        return f"MAP({duck_type(t.key_type)}, {structure_type(t.item_type, duck_type)})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return structure_type(t.value_type, duck_type) + "[]"
    return "STRUCT(" + ", ".join(f"{_q(f.name)} {structure_type(f.type, duck_type)}" for f in t) + ")"


def _structure(t: pa.DataType, duck_type) -> str:
    """A ``json_transform_strict`` structure literal for ``t``."""
    return "'" + orjson.dumps(structure_type(t, duck_type)).decode().replace("'", "''") + "'"


def json_rows(values: pa.Array, expr: str, what: str, con=None, mismatch: str | None = None) -> pa.StructArray:
    """Evaluate ``expr`` (SQL over the JSON text column ``j``, giving one struct per value) with DuckDB,
    vectorised. Invalid UTF-8, a DuckDB error (reported as ``mismatch``) and a null result are
    ConversionErrors naming ``what``."""
    from integrations.converters.json import ConversionError, _duck

    try:
        text = values.cast(pa.string())
    except pa.ArrowInvalid as e:
        raise ConversionError(f"{what} is not valid UTF-8: {e}") from e
    con = con or _duck()
    con.register("_hr_json", pa.table({"j": text}))
    try:
        out = con.sql(f"SELECT {expr} AS s FROM _hr_json").to_arrow_table()
    except duckdb.Error as e:
        raise ConversionError(f"{mismatch or what + ' does not match its schema'}: {e}") from e
    finally:
        con.unregister("_hr_json")
    col = out.column(0).combine_chunks()
    if col.null_count:
        raise ConversionError(f"a {what} is null or not a JSON object")
    return col


def parse_declared(values: list[bytes], schema: pa.Schema) -> pa.Table:
    """Parse JSON objects into exactly the columns of ``schema`` with DuckDB's ``json_transform_strict``,
    which reads ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` as floats at any depth (``pyarrow.json``
    reads them only where it is told a top-level field is a float). A field that ``schema`` does not
    declare is an error here, never dropped."""
    from integrations.converters.json import ConversionError, _duck

    con = _duck()
    con.register("_hr_empty", schema.empty_table())
    try:
        types = {row[0]: row[1] for row in con.sql("DESCRIBE _hr_empty").fetchall()}
    finally:
        con.unregister("_hr_empty")
    structure = orjson.dumps({n: types[n] for n in schema.names}).decode().replace("'", "''")
    literals = ["'" + n.replace("'", "''") + "'" for n in schema.names]
    # every declared key present (a missing one is null, as pyarrow.json reads it), then strictly typed;
    # a key the schema lacks makes the row null, which json_rows reports
    whole = "json_object(" + ", ".join(f"{lit}, j->{lit}" for lit in literals) + ")"
    known = f"list_has_all([{', '.join(literals)}], json_keys(j))"
    try:
        col = json_rows(pa.array(values, pa.binary()),
                        f"CASE WHEN {known} THEN json_transform_strict({whole}, '{structure}') END", "value", con,
                        "malformed JSON in batch")
    except ConversionError as e:
        if "null or not a JSON object" not in str(e):
            raise
        raise ConversionError("a value holds fields the declared schema does not have (in a batch with NaN or "
                              "Infinity nested in lists or structs; declare every field), or is not a JSON "
                              "object") from e
    try:
        return pa.Table.from_struct_array(col).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ConversionError(f"values do not match the declared schema: {e}") from e
