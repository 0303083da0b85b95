"""Every row of an Arrow table encoded at once, column by column: ``RowCodec.encode_table``'s
fast path (the row layout is ``ferry.core.codec``'s).

numpy builds all rows' fixed parts (header, null bitmap, fixed-width values) as one packed
structured array and scatters the variable-width payloads straight from the Arrow buffers
into one output buffer; Python runs once per row only to cut that buffer into the ``bytes``
the stores take. The row-by-row encoder cost ~6.6 µs per fraud row, most of a
materialization's CPU (docs/benchmarks.md).

It takes the common case and declines the rest (returns None) to the row-by-row encoder,
which checks every value and names the bad one: a column whose Arrow type is not exactly
its feature's (an int64 column for an INT32 feature needs a range check), string lists,
list elements that are null, a null event time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ferry.core.types import ValueType

_SIGN = np.uint64(1 << 63)
_FIXED: dict[ValueType, tuple[pa.DataType | None, str]] = {
    ValueType.INT64: (pa.int64(), "<i8"),
    ValueType.INT32: (pa.int32(), "<i4"),
    ValueType.DOUBLE: (pa.float64(), "<f8"),
    ValueType.FLOAT: (pa.float32(), "<f4"),
    ValueType.BOOL: (pa.bool_(), "?"),
    ValueType.TIMESTAMP: (None, "<i8"),  # any timestamp unit, or int64 µs
}
_LIST_ELEMENTS: dict[ValueType, tuple[pa.DataType, str]] = {
    ValueType.INT64_LIST: (pa.int64(), "<i8"),
    ValueType.INT32_LIST: (pa.int32(), "<i4"),
    ValueType.DOUBLE_LIST: (pa.float64(), "<f8"),
    ValueType.FLOAT_LIST: (pa.float32(), "<f4"),
}


def encode_rows(
    table: pa.Table,
    names: Sequence[str],
    types: Sequence[ValueType],
    version: int,
    static: bytes,
    event_timestamp: str,
    created_timestamp: str | None,
    no_created: int,
) -> list[bytes] | None:
    """The encoded rows of ``table``, or None where this path does not apply.

    Args:
        names, types: The features, in the codec's order.
        version: The row format's version byte.
        static: The codec's bytes after the timestamps (the fingerprint).
        no_created: What a missing created timestamp is stored as.
    """
    count = table.num_rows
    if count == 0:
        return []
    events = _micros(table[event_timestamp])
    if events is None or table[event_timestamp].null_count:
        return None
    if created_timestamp is None:
        created = np.full(count, no_created, np.int64)
    else:
        created_micros = _micros(table[created_timestamp], fill=no_created)
        if created_micros is None:
            return None
        created = created_micros
    fixed = [i for i, t in enumerate(types) if t in _FIXED]
    variable = [i for i, t in enumerate(types) if i not in fixed]
    nulls = [_nulls(table[name]) for name in names]
    payloads = []
    for i in variable:
        payload = _payload(table[names[i]], types[i], nulls[i])
        if payload is None:
            return None
        payloads.append(payload)
    bitmap_size = (len(types) + 7) // 8
    layout = np.dtype(
        [
            ("version", "u1"),
            ("event", ">u8"),
            ("created", ">u8"),
            ("static", f"V{len(static)}"),
            ("bitmap", "u1", (bitmap_size,)),
            *[(f"f{i}", _FIXED[types[i]][1]) for i in fixed],
        ]
    )
    head = np.zeros(count, layout)
    head["version"] = version
    head["event"] = events.view(np.uint64) ^ _SIGN
    head["created"] = created.view(np.uint64) ^ _SIGN
    head["static"] = np.frombuffer(static, f"V{len(static)}")[0]
    bitmap = np.zeros((count, bitmap_size), np.uint8)
    for i, mask in enumerate(nulls):
        if mask is not None:
            bitmap[:, i // 8] |= mask.astype(np.uint8) << np.uint8(i % 8)
    head["bitmap"] = bitmap
    for i in fixed:
        values = _fixed_values(table[names[i]], types[i])
        if values is None:
            return None
        head[f"f{i}"] = values
    return _assemble(head, payloads)


def _micros(column: pa.ChunkedArray, fill: int = 0) -> np.ndarray[Any, Any] | None:
    """int64 µs of a timestamp or int64 column, nulls as ``fill``."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz=column.type.tz), safe=False).cast(pa.int64())
    elif column.type != pa.int64():
        return None
    return np.asarray(column.fill_null(fill).to_numpy(zero_copy_only=False), np.int64)


def _nulls(column: pa.ChunkedArray) -> np.ndarray[Any, Any] | None:
    if column.null_count == 0:
        return None
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False), bool)


def _fixed_values(column: pa.ChunkedArray, kind: ValueType) -> np.ndarray[Any, Any] | None:
    """A fixed-width feature's values, zero (False) where null; None if its type differs."""
    if kind is ValueType.TIMESTAMP:
        return _micros(column)
    arrow_type, _ = _FIXED[kind]
    if column.type != arrow_type:
        return None
    zero = False if kind is ValueType.BOOL else 0
    return np.asarray(column.fill_null(zero).to_numpy(zero_copy_only=False))


def _payload(
    column: pa.ChunkedArray, kind: ValueType, nulls: np.ndarray[Any, Any] | None
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """A variable-width feature as (bytes, each row's start in them, each row's length),
    length 0 where ``nulls`` (None: no nulls); None where this path does not apply."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if kind in (ValueType.STRING, ValueType.BYTES):
        narrow, wide = (
            (pa.string(), pa.large_string())
            if kind is ValueType.STRING
            else (pa.binary(), pa.large_binary())
        )
        if array.type not in (narrow, wide):
            return None
        _, offset_buffer, data_buffer = array.buffers()
        offset_type = np.int32 if array.type == narrow else np.int64
        offsets = np.frombuffer(offset_buffer, offset_type)[array.offset :][: len(array) + 1]
        offsets = offsets.astype(np.int64)
        data = np.frombuffer(data_buffer or b"", np.uint8)
        starts, lengths = offsets[:-1], np.diff(offsets)
    elif kind in _LIST_ELEMENTS:
        element, dtype = _LIST_ELEMENTS[kind]
        if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
            return None
        if array.type.value_type != element or array.values.null_count:
            return None
        offsets = np.asarray(array.offsets.to_numpy(zero_copy_only=False), np.int64)
        size = np.dtype(dtype).itemsize
        values = np.ascontiguousarray(array.values.to_numpy(zero_copy_only=False), dtype)
        data = values.view(np.uint8)
        starts, lengths = offsets[:-1] * size, np.diff(offsets) * size
    else:
        return None
    if nulls is not None:
        lengths = np.where(nulls, 0, lengths)
    return data, starts, lengths


def _assemble(
    head: np.ndarray[Any, Any],
    payloads: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]],
) -> list[bytes]:
    """Each row: its fixed part, then per variable-width feature a varint length and the
    bytes."""
    count, fixed_size = len(head), head.dtype.itemsize
    sizes = np.full(count, fixed_size, np.int64)
    prefix_sizes = [_varint_sizes(lengths) for _, _, lengths in payloads]
    for (_, _, lengths), prefix in zip(payloads, prefix_sizes, strict=True):
        sizes += prefix + lengths
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.empty(int(ends[-1]) if count else 0, np.uint8)
    out[starts[:, None] + np.arange(fixed_size)] = head.view(np.uint8).reshape(count, fixed_size)
    cursor = starts + fixed_size
    for (data, sources, lengths), prefix in zip(payloads, prefix_sizes, strict=True):
        _write_varints(out, cursor, lengths, prefix)
        cursor += prefix
        total = int(lengths.sum())
        if total:
            within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            out[np.repeat(cursor, lengths) + within] = data[np.repeat(sources, lengths) + within]
        cursor += lengths
    buffer = out.tobytes()
    return [buffer[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def _varint_sizes(lengths: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Bytes in the varint of each length (1 below 128, one more per 7 bits)."""
    sizes = np.ones(len(lengths), np.int64)
    for bits in (7, 14, 21, 28):
        sizes += lengths >= (1 << bits)
    return sizes


def _write_varints(
    out: np.ndarray[Any, Any],
    at: np.ndarray[Any, Any],
    lengths: np.ndarray[Any, Any],
    sizes: np.ndarray[Any, Any],
) -> None:
    """Write each length's varint into ``out`` at its row's position: byte k is bits
    7k..7k+6, with the high bit set on every byte but the last."""
    values = lengths.astype(np.uint64)
    for k in range(int(sizes.max()) if len(sizes) else 0):
        within = sizes > k
        group = ((values >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        group[sizes > k + 1] |= 0x80
        out[at[within] + k] = group[within]
