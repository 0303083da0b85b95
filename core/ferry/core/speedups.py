"""The serving path's per-row loops: compiled where ``ferry.core._speedups`` was built, in
Python otherwise, with the same results (tests run both against the same oracles).

``scripts/setup.sh`` builds the extension from ``_speedups.c`` where a C compiler and
Python's headers are (``scripts/build_speedups.py``), as does a wheel's build there
(``hatch_build.py``); without them, Ferry runs the Python functions below.
``FERRY_PURE_PYTHON=1`` chooses them even where the extension is built (benchmarks compare
the two that way). Callers look the functions up on this module at call time, so a test
can swap one implementation for the other.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from ferry.core.errors import InvalidValueError

_compiled: ModuleType | None
try:
    from ferry.core import _speedups as _compiled  # type: ignore[attr-defined,no-redef]
except ImportError:  # not built here
    _compiled = None

COMPILED = _compiled
"""The extension module, or None where it was not built."""

_SMALL = [bytes([n]) for n in range(0x80)]
_MASK64 = (1 << 64) - 1
_STR_HEAD = struct.Struct(">BI")
_INT = struct.Struct(">BQ")
_SIGN = 1 << 63


def py_read_length(row: bytes, pos: int) -> tuple[int, int]:
    """The varint length at ``pos`` of a row, and the position after it.

    Raises:
        InvalidValueError: the row ends inside the varint, or it is longer than a u32's.
    """
    value = 0
    for shift in range(0, 35, 7):
        if pos >= len(row):
            break
        byte = row[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise InvalidValueError("a stored row ends inside a length, or holds one over 5 bytes")


def py_split_var(rows: list[bytes], offset: int, count: int) -> list[list[bytes]]:
    """Each row's variable-width payloads (from ``offset``, each a varint length and its
    bytes): one list per variable-width field.

    Raises:
        InvalidValueError: a row ends inside them.
    """
    out: list[list[bytes]] = [[] for _ in range(count)]
    for i, row in enumerate(rows):
        pos, size = offset, len(row)
        for payloads in out:
            length = row[pos] if pos < size else 0x80
            if length < 0x80:  # a payload under 128 bytes: nearly all of them
                pos += 1
            else:
                length, pos = py_read_length(row, pos)
            if pos + length > size:
                raise InvalidValueError(f"stored row {i} ends inside its variable-width values")
            payloads.append(row[pos : pos + length])
            pos += length
    return out


def py_gather_rows(
    rows: Sequence[bytes | None], version: int, fingerprint: bytes, missing: bytes, fixed_end: int
) -> tuple[list[bytes], list[int], bytes | None, bytes]:
    """(uniform, odd, prefixes, present) of a block of rows: each row (``missing`` where
    None); the indexes of rows not of this version and fingerprint (or too short);
    the first ``fixed_end`` bytes of every row joined, or None where any is odd; and one
    byte per row, 1 where a row was stored."""
    uniform: list[bytes] = []
    odd: list[int] = []
    for i, row in enumerate(rows):
        if row is None:
            uniform.append(missing)
            continue
        if len(row) < fixed_end or row[0] != version or row[17:21] != fingerprint:
            odd.append(i)
        uniform.append(row)
    present = bytes([row is not None for row in rows])
    prefixes = None if odd else b"".join([row[:fixed_end] for row in uniform])
    return uniform, odd, prefixes, present


def py_varints(values: Any) -> bytes:
    """The varints of int64 values (an array or a sequence of ints), concatenated."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    out = []
    for value in values:
        if 0 <= value < 0x80:
            out.append(_SMALL[value])
            continue
        value &= _MASK64
        piece = bytearray()
        while value >= 0x80:
            piece.append((value & 0x7F) | 0x80)
            value >>= 7
        piece.append(value)
        out.append(bytes(piece))
    return b"".join(out)


def py_byte_strings(key: bytes, values: list[bytes]) -> bytes:
    """A repeated bytes field: per value, ``key``, a varint length and the value."""
    return b"".join([key + py_varints((len(v),)) + v for v in values])


def py_str_keys(values: Iterable[str]) -> list[bytes]:
    """The canonical key of each one-string entity (``ferry.core.keys``)."""
    head = _STR_HEAD.pack
    out = []
    for value in values:
        data = value.encode("utf-8")
        out.append(head(0x02, len(data)) + data)
    return out


def py_int_keys(values: Iterable[int]) -> list[bytes]:
    """The canonical key of each one-integer entity (``ferry.core.keys``)."""
    pack = _INT.pack
    return [pack(0x01, (v & _MASK64) ^ _SIGN) for v in values]


def _choose() -> None:
    """Bind the names callers use to the compiled functions, or to the Python ones."""
    use = _compiled if _compiled is not None and not os.environ.get("FERRY_PURE_PYTHON") else None
    names = ("split_var", "gather_rows", "varints", "byte_strings", "str_keys", "int_keys")
    for name in names:
        globals()[name] = getattr(use, name) if use is not None else globals()[f"py_{name}"]


split_var = py_split_var
gather_rows = py_gather_rows
varints = py_varints
byte_strings = py_byte_strings
str_keys = py_str_keys
int_keys = py_int_keys
_choose()
