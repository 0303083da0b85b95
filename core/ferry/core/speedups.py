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

import numpy as np

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


def varint(value: int) -> bytes:
    """One unsigned varint (negative int64s as their 10-byte two's complement): a length
    in a row, a key or a length in a protobuf message."""
    if 0 <= value < 0x80:  # lengths, statuses, type codes: most varints written
        return _SMALL[value]
    if 0 < value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    value &= _MASK64
    if 1 << 49 <= value < 1 << 56:  # µs timestamps of this era: 8 bytes, unrolled
        return bytes(
            (
                (value & 0x7F) | 0x80,
                ((value >> 7) & 0x7F) | 0x80,
                ((value >> 14) & 0x7F) | 0x80,
                ((value >> 21) & 0x7F) | 0x80,
                ((value >> 28) & 0x7F) | 0x80,
                ((value >> 35) & 0x7F) | 0x80,
                ((value >> 42) & 0x7F) | 0x80,
                value >> 49,
            )
        )
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def py_varints(values: np.ndarray[Any, Any] | Sequence[int]) -> bytes:
    """The varints of int64 values (an array or a sequence of ints), concatenated.

    Signed values are sign-extended to 64 bits first, as protobuf encodes int32 and int64.
    Short arrays go through Python (numpy's fixed cost per call is more than a few
    varints); long ones take a few numpy calls, fewer still when every value needs the same
    number of bytes (timestamps of one era, small counts), the common case.
    """
    if not isinstance(values, np.ndarray):
        return b"".join([varint(v) for v in values])
    if len(values) < 16:
        return b"".join([varint(v) for v in values.tolist()])
    wide = values.astype(np.int64, copy=False).view(np.uint64)
    size = _varint_size(int(wide.max()))
    if _varint_size(int(wide.min())) == size:
        groups = ((wide[:, None] >> _SHIFTS[:size]) & np.uint64(0x7F)).astype(np.uint8)
        groups[:, : size - 1] |= 0x80
        return bytes(groups.tobytes())
    shifted = wide[:, None] >> _SHIFTS
    groups = (shifted & np.uint64(0x7F)).astype(np.uint8)
    # Group i is needed while bits remain at or above 7i; a zero still takes one byte.
    needed = np.maximum(1, np.count_nonzero(shifted, axis=1))
    position = np.arange(10)
    groups[position < (needed - 1)[:, None]] |= 0x80
    return bytes(groups[position < needed[:, None]].tobytes())


_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)


def _varint_size(value: int) -> int:
    """Bytes in the varint of an unsigned 64-bit value."""
    return max(1, (value.bit_length() + 6) // 7)


def py_byte_strings(key: bytes, values: list[bytes]) -> bytes:
    """A repeated bytes field: per value, ``key``, a varint length and the value."""
    return b"".join([key + varint(len(v)) + v for v in values])


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


# The names callers use: the compiled functions, or the Python ones.
_use = _compiled if _compiled is not None and not os.environ.get("FERRY_PURE_PYTHON") else None
split_var = py_split_var if _use is None else _use.split_var
gather_rows = py_gather_rows if _use is None else _use.gather_rows
varints = py_varints if _use is None else _use.varints
byte_strings = py_byte_strings if _use is None else _use.byte_strings
str_keys = py_str_keys if _use is None else _use.str_keys
int_keys = py_int_keys if _use is None else _use.int_keys
