"""``--entity KEY=V1,V2,...`` options, shared by the commands that take entities.

One option per join key; ``KEY:string=...`` or ``KEY:int=...`` states the type, otherwise a
key's values are integers when every one parses as an integer, else strings.
"""

from __future__ import annotations

from ferry.core.errors import InvalidValueError

EntityColumns = dict[str, list[int | str]]


def raw_entity_options(specs: list[str]) -> dict[str, tuple[str, list[str]]]:
    """The options as (type hint, values as written) per join key, in the order given.

    Raises:
        InvalidValueError: a malformed option or type hint, a repeated key, or keys with
            unequal value counts.
    """
    out: dict[str, tuple[str, list[str]]] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep or not name:
            raise InvalidValueError(f"--entity {spec!r}: expected KEY=V1,V2,...")
        name, _, hint = name.partition(":")
        if name in out:
            raise InvalidValueError(f"--entity {name}: given twice")
        if hint not in ("", "string", "int"):
            raise InvalidValueError(f"--entity {name}:{hint}: the type hint is string or int")
        out[name] = (hint, text.split(","))
    if len({len(values) for _, values in out.values()}) > 1:
        raise InvalidValueError("every --entity needs the same number of values")
    return out


def parse_entity_options(specs: list[str]) -> EntityColumns:
    """The options as one typed column per join key (see the module docstring).

    Raises:
        InvalidValueError: as ``raw_entity_options``, or non-integers under ``:int``.
    """
    out: EntityColumns = {}
    for name, (hint, values) in raw_entity_options(specs).items():
        if hint != "string" and all(_is_int(v) for v in values):
            out[name] = [int(v) for v in values]
        elif hint == "int":
            raise InvalidValueError(f"--entity {name}: values must be integers")
        else:
            out[name] = list(values)
    return out


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
