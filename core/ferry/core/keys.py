"""The canonical entity-key encoding: join-key values in the view's key order, as bytes.

Each value is one tagged field; the fields are concatenated in join-key order:

    integer  0x01, then 8 bytes: the int64 big-endian with its sign bit flipped
    string   0x02, then a 4-byte big-endian length, then the UTF-8 bytes

int32 and int64 keys of equal value encode the same, so a key column's width never changes
which row a lookup finds. The sign flip makes byte order equal numeric order, which range
scans in ordered stores (SQLite, DynamoDB sort keys) can rely on. Online stores prefix the
encoded key with the project and view; that prefix is the store's business, not this codec's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa

from ferry.core import speedups
from ferry.core.errors import InvalidValueError

_INT_TAG = 0x01
_STR_TAG = 0x02
_SIGN = 1 << 63
_INT = struct.Struct(">BQ")
_STR_HEAD = struct.Struct(">BI")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

KeyValue = int | str


def encode_key(values: Sequence[KeyValue]) -> bytes:
    """Encode one entity's join-key values, in the view's join-key order.

    Raises:
        InvalidValueError: a value is neither an int64-range integer nor a string.
    """
    parts = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidValueError(f"join-key value {value!r} is not an integer or a string")
        if isinstance(value, int):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise InvalidValueError(f"join-key value {value} does not fit in int64")
            parts.append(_INT.pack(_INT_TAG, (value + (1 << 64)) % (1 << 64) ^ _SIGN))
        else:
            data = value.encode("utf-8")
            parts.append(_STR_HEAD.pack(_STR_TAG, len(data)) + data)
    return b"".join(parts)


def encode_int_keys(values: Iterable[int]) -> list[bytes]:
    """``encode_key([v])`` for many int64 values at once, without per-value type checks:
    for callers whose values are typed already (API columns, Arrow arrays); compiled
    where ``ferry.core.speedups`` is."""
    return speedups.int_keys(values)


def encode_str_keys(values: Iterable[str]) -> list[bytes]:
    """``encode_key([s])`` for many strings at once; see ``encode_int_keys`` (compiled
    where ``ferry.core.speedups`` is)."""
    return speedups.str_keys(values)


def decode_key(data: bytes) -> tuple[KeyValue, ...]:
    """The join-key values an encoded key holds.

    Raises:
        InvalidValueError: ``data`` is not an encoded key.
    """
    out: list[KeyValue] = []
    pos = 0
    while pos < len(data):
        tag = data[pos]
        if tag == _INT_TAG and pos + 9 <= len(data):
            raw = _INT.unpack_from(data, pos)[1] ^ _SIGN
            out.append(raw - (1 << 64) if raw >= _SIGN else raw)
            pos += 9
        elif tag == _STR_TAG and pos + 5 <= len(data):
            length = _STR_HEAD.unpack_from(data, pos)[1]
            end = pos + 5 + length
            if end > len(data):
                raise InvalidValueError("truncated string in an encoded entity key")
            out.append(data[pos + 5 : end].decode("utf-8"))
            pos = end
        else:
            raise InvalidValueError(f"byte {pos} of an encoded entity key has tag {tag}")
    return tuple(out)


def encode_key_columns(columns: Sequence[pa.Array | pa.ChunkedArray]) -> list[bytes]:
    """Encode many entities at once: one column per join key, in join-key order.

    Integer columns are encoded with numpy in one pass; strings need one Python step each.

    Raises:
        InvalidValueError: a column holds nulls or has a type other than integer or string.
    """
    if not columns:
        raise InvalidValueError("an entity key needs at least one join-key column")
    parts = [_encode_column(c) for c in columns]
    if len(parts) == 1:
        return parts[0]
    return [b"".join(row) for row in zip(*parts, strict=True)]


def _encode_column(column: pa.Array | pa.ChunkedArray) -> list[bytes]:
    if column.null_count:
        raise InvalidValueError("a join-key column holds nulls")
    kind = column.type
    if pa.types.is_integer(kind):
        values = np.asarray(column.cast(pa.int64())).view(np.uint64) ^ np.uint64(_SIGN)
        packed = np.empty((len(values), 9), dtype=np.uint8)
        packed[:, 0] = _INT_TAG
        packed[:, 1:] = values.astype(">u8").view(np.uint8).reshape(-1, 8)
        flat = packed.tobytes()
        return [flat[i : i + 9] for i in range(0, len(flat), 9)]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return encode_str_keys(column.to_pylist())
    raise InvalidValueError(f"a join-key column must be integer or string, found {kind}")
