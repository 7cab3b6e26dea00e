"""Maps with non-string keys in Kafka Connect's JSON: arrays of ``[key, value]`` pairs.

Kafka Connect's JsonConverter writes a map whose key schema is ``string`` as a JSON object and any
other map as an array of two-element arrays: ``{1: "a", 2: "b"}`` becomes ``[[1,"a"],[2,"b"]]``.
These helpers build DuckDB SQL expressions (vectorised; no Python per row) that write and read
such maps at any depth inside lists, structs and string-keyed maps.
"""

from __future__ import annotations

import itertools

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


def to_pairs_sql(e: str, t: pa.DataType) -> str:
    """SQL for value ``e`` of payload type ``t`` with every non-string-keyed map as a list of JSON pairs."""
    if not has_pairs(t):
        return e
    x = _var()
    if pa.types.is_map(t):
        k, v = to_pairs_sql(f"{x}.key", t.key_type), to_pairs_sql(f"{x}.value", t.item_type)
        if keyed_map(t):
            return f"list_transform(map_entries({e}), lambda {x}: json_array({k}, {v}))"
        return f"map_from_entries(list_transform(map_entries({e}), lambda {x}: {{'key': {k}, 'value': {v}}}))"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list_transform({e}, lambda {x}: {to_pairs_sql(x, t.value_type)})"
    fields = ", ".join(f"{_q(f.name)} := {to_pairs_sql(f'({e}).{_q(f.name)}', f.type)}" for f in t)
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
