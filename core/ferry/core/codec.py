"""The online row codec: one view's features of one entity, plus its timestamps, as bytes.

Layout (version 2, what Ferry writes)::

    offset  size  field
    0       1     version = 2
    1       8     event_timestamp,   µs since epoch, big-endian, sign bit flipped
    9       8     created_timestamp, same encoding; INT64_MIN when the source has none
    17      4     schema fingerprint (CRC-32 of the view's field descriptors), big-endian
    21      ⌈n/8⌉ null bitmap: bit i set means field i is null
    ..      ..    fixed-width values in field order, little-endian, zero when null
    ..      ..    variable-width values in field order: a varint length (LEB128), then bytes

A view's field descriptors (5 bytes per field: CRC-32 of the feature name, big-endian, and
a type code) are not in the row: the fingerprint names them, and a reader knows its own
view's. Rows of another schema of the view (written before it gained, lost or retyped a
feature) are decoded from descriptors the writers record in the store
(``ferry.stores.schemas``): a reader learns each such schema once, on the first row that
names it (``UnknownSchemaError`` tells it which to look up).

Version 1 (written by Ferry before December 2026, still read) is the same up to byte 21,
then a 2-byte big-endian field count and the descriptors themselves, and u32
little-endian lengths in place of the varints: self-describing, 2 + 5n + 3 bytes per
variable-width field larger.

Why this shape:
  * bytes 1..16 compare as unsigned big-endian integers in the same order as
    (event_timestamp, created_timestamp), so a store can decide "is the new row newer" from
    the two headers alone (Redis does it in Lua, SQLite with a BLOB comparison), and they
    are at the same offsets in both versions;
  * a feature the row lacks reads as null, a field the view no longer has is skipped, so
    a reader whose view changed still reads rows written before; readers keep one decoder
    per schema, so the common case costs one dict lookup;
  * the fingerprint lets a writer replace a row of equal timestamps written under another
    schema (a re-materialization after adding a feature), and nothing else.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from ferry.core import speedups
from ferry.core.codec_table import encode_rows
from ferry.core.errors import InvalidValueError, UnknownSchemaError
from ferry.core.repo import Feature
from ferry.core.types import ValueType

VERSION = 2
LEGACY_VERSION = 1
NO_CREATED_TIMESTAMP = -(1 << 63)
"""Stored as the created timestamp of rows whose source has no created-timestamp field."""

_SIGN = 1 << 63
_MASK = (1 << 64) - 1
_HEAD = struct.Struct(">BQQI")
_LEGACY_HEAD = struct.Struct(">BQQIH")
_DESCRIPTOR = struct.Struct(">IB")
_U32 = struct.Struct("<I")
_TIMESTAMPS = slice(1, 17)

_TYPE_CODES: dict[ValueType, int] = {t: i + 1 for i, t in enumerate(ValueType)}
_CODE_TYPES = {code: t for t, code in _TYPE_CODES.items()}
_FIXED_FORMATS = {
    ValueType.INT64: "q",
    ValueType.INT32: "i",
    ValueType.DOUBLE: "d",
    ValueType.FLOAT: "f",
    ValueType.BOOL: "?",
    ValueType.TIMESTAMP: "q",
}
_NUMPY_TYPES = {
    ValueType.INT64: "<i8",
    ValueType.INT32: "<i4",
    ValueType.DOUBLE: "<f8",
    ValueType.FLOAT: "<f4",
    ValueType.BOOL: "?",
    ValueType.TIMESTAMP: "<i8",
}
_LIST_FORMATS = {
    ValueType.INT64_LIST: "q",
    ValueType.INT32_LIST: "i",
    ValueType.DOUBLE_LIST: "d",
    ValueType.FLOAT_LIST: "f",
}


def field_tag(feature: Feature) -> int:
    """The stable 32-bit tag of a feature's name (its type is stored beside it)."""
    return zlib.crc32(feature.name.encode("utf-8"))


def timestamp_prefix(row: bytes) -> bytes:
    """Bytes 1..16 of a row: compare two prefixes to compare (event, created) timestamps."""
    return row[_TIMESTAMPS]


def event_timestamp_of(row: bytes) -> int:
    """The event timestamp (µs) in a row's header, without decoding the row."""
    return _unbias(int.from_bytes(row[1:9], "big"))


def _unbias(stored: int) -> int:
    """Undo the header's sign-bit flip: unsigned big-endian back to int64."""
    raw = stored ^ _SIGN
    return raw - (1 << 64) if raw >= _SIGN else raw


def fingerprint_of(row: bytes) -> int:
    """The schema fingerprint a row was written with."""
    return int.from_bytes(row[17:21], "big")


class DecodedRow(NamedTuple):
    """A stored row, read against the reader's feature list.

    Attributes:
        event_timestamp: µs since the epoch.
        created_timestamp: µs since the epoch, or None when the source had none.
        values: One per feature of the reader's list, in its order; None for null or for a
            feature the row was written without. Timestamps are µs ints, lists are lists.
    """

    # A NamedTuple, not a frozen dataclass: the server builds one per stored row it reads,
    # and a frozen dataclass's __init__ costs about 1 µs more each.
    event_timestamp: int
    created_timestamp: int | None
    values: tuple[Any, ...]


class ListColumn(NamedTuple):
    """A list feature over many rows: every row's elements concatenated, and each row's
    element count (0 for a null). Numeric elements are a numpy array (or a list), strings
    UTF-8 bytes."""

    values: np.ndarray[Any, Any] | list[Any]
    lengths: np.ndarray[Any, np.dtype[np.uint32]] | list[int]


class RowBlock(NamedTuple):
    """Rows of one view read column by column, for serving many rows without a Python
    object per value.

    Attributes:
        present: Per row, whether a row was stored.
        event_timestamps: Per row, µs since the epoch (int64); 0 where absent.
        nulls: Per row and feature of the reader's list, True where the value is null, the
            row was written without the feature, or no row was stored.
        fixed: Per fixed-width feature (by index): its values as a numpy array, zero where
            null. Timestamps are int64 µs, bools numpy bools.
        strings: Per string or bytes feature (by index): each row's raw bytes (UTF-8 for
            strings), b"" where null.
        lists: Per list feature (by index): a ``ListColumn``.
    """

    present: np.ndarray[Any, np.dtype[np.bool_]]
    event_timestamps: np.ndarray[Any, np.dtype[np.int64]]
    nulls: np.ndarray[Any, np.dtype[np.bool_]]
    fixed: dict[int, np.ndarray[Any, Any]]
    strings: dict[int, list[bytes]]
    lists: dict[int, ListColumn]


class RowCodec:
    """Encodes and decodes the rows of one feature view's current schema."""

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = tuple(features)
        self._names = [f.name for f in self.features]
        tags = [field_tag(f) for f in self.features]
        if len(set(tags)) != len(tags):
            raise InvalidValueError("two feature names of one view share a CRC-32 tag; rename one")
        self.descriptors = b"".join(
            _DESCRIPTOR.pack(tag, _TYPE_CODES[f.type])
            for tag, f in zip(tags, self.features, strict=True)
        )
        """The schema's field descriptors: what ``learn`` takes, and what writers record."""
        self.fingerprint = zlib.crc32(self.descriptors)
        self._static = self.fingerprint.to_bytes(4, "big")
        self._layout = _Layout([(t, f.type) for t, f in zip(tags, self.features, strict=True)])
        self._wanted = {
            (tag, f.type): i for i, (tag, f) in enumerate(zip(tags, self.features, strict=True))
        }
        # Version 2 rows by fingerprint; version 1 rows by their descriptors.
        self._schemas: dict[bytes, Callable[[bytes, int], tuple[Any, ...]]] = {
            self._static: self._layout.decode
        }
        self._legacy: dict[bytes, Callable[[bytes, int], tuple[Any, ...]]] = {}
        self._fixed_end = _HEAD.size + self._layout.bitmap_size + self._layout.fixed_struct.size
        self._prefix_dtype = np.dtype(
            [
                ("head", f"V{1}"),
                ("event", ">u8"),
                ("rest", f"V{_HEAD.size - 9}"),
                ("bitmap", "u1", (self._layout.bitmap_size,)),
                *[(f"f{i}", _NUMPY_TYPES[self._layout.types[i]]) for i in self._layout.fixed],
            ]
        )
        self._fixed_fields = [(i, f"f{i}") for i in self._layout.fixed]
        # Stands in for a missing row in decode_block: time 0, every value null.
        self._missing = self.encode(0, None, [None] * len(self.features))

    def learn(self, descriptors: bytes) -> int:
        """Read rows of another schema of this view from now on; returns its fingerprint.

        Raises:
            InvalidValueError: ``descriptors`` are not a field descriptor list.
        """
        fingerprint = zlib.crc32(descriptors)
        key = fingerprint.to_bytes(4, "big")
        if key not in self._schemas:
            self._schemas[key] = self._foreign_decoder(descriptors, legacy=False)
        return fingerprint

    def encode(
        self, event_timestamp: int, created_timestamp: int | None, values: Sequence[Any]
    ) -> bytes:
        """Encode one row; ``values`` follow the feature order, None meaning null.

        Raises:
            InvalidValueError: a value does not fit its feature's type.
        """
        created = NO_CREATED_TIMESTAMP if created_timestamp is None else created_timestamp
        head = struct.pack(
            ">BQQ", VERSION, (event_timestamp & _MASK) ^ _SIGN, (created & _MASK) ^ _SIGN
        )
        try:
            return head + self._static + self._layout.encode(values)
        except (struct.error, TypeError, AttributeError, OverflowError) as err:
            raise InvalidValueError(self._explain(values, err)) from err

    def encode_table(
        self, table: pa.Table, event_timestamp: str, created_timestamp: str | None
    ) -> list[bytes]:
        """Encode every row of an Arrow table holding the timestamp columns and the features.

        Timestamp columns may be Arrow timestamps or int64 µs. Columns whose Arrow types
        are the features' own are encoded all at once (``ferry.core.codec_table``); the
        rest are converted to Python values column by column, then packed row by row.

        Raises:
            InvalidValueError: a value does not fit its feature; the message names the row.
        """
        at_once = encode_rows(
            table,
            self._names,
            self._layout.types,
            VERSION,
            self._static,
            event_timestamp,
            created_timestamp,
            NO_CREATED_TIMESTAMP,
        )
        if at_once is not None:
            return at_once
        events = _micros_list(table[event_timestamp])
        if created_timestamp is None:
            created: list[int | None] = [None] * table.num_rows
        else:
            created = _micros_list(table[created_timestamp])
        columns = [
            _micros_list(table[f.name])
            if f.type is ValueType.TIMESTAMP
            else table[f.name].to_pylist()
            for f in self.features
        ]
        encode = self.encode
        out = []
        for i, (event, made, *values) in enumerate(zip(events, created, *columns, strict=True)):
            try:
                out.append(encode(event, made, values))
            except InvalidValueError as err:
                raise InvalidValueError(f"row {i}: {err}", row=i) from err
        return out

    def decode(self, row: bytes) -> DecodedRow:
        """Decode a row written under this or any other schema of the view it knows.

        Raises:
            UnknownSchemaError: a version 2 row of a schema not learnt (see ``learn``).
            InvalidValueError: the bytes are not a row of a known codec version.
        """
        version = row[0] if len(row) >= _HEAD.size else None
        if version == VERSION:
            _, event, created, _ = _HEAD.unpack_from(row)
            decoder = self._schemas.get(row[17:21])
            if decoder is None:
                fingerprint = fingerprint_of(row)
                raise UnknownSchemaError(
                    f"the row was written under schema {fingerprint:08x} of its view, "
                    "which this reader has not learnt",
                    fingerprint,
                )
            values = decoder(row, _HEAD.size)
        elif version == LEGACY_VERSION and len(row) >= _LEGACY_HEAD.size:
            _, event, created, _, count = _LEGACY_HEAD.unpack_from(row)
            end = _LEGACY_HEAD.size + _DESCRIPTOR.size * count
            descriptors = row[_LEGACY_HEAD.size : end]
            decoder = self._legacy.get(descriptors)
            if decoder is None:
                decoder = self._legacy[descriptors] = self._foreign_decoder(
                    descriptors, legacy=True
                )
            values = decoder(row, end)
        else:
            raise InvalidValueError(f"not a Ferry row (version byte {row[:1]!r})")
        created_ts = _unbias(created)
        return DecodedRow(
            _unbias(event), None if created_ts == NO_CREATED_TIMESTAMP else created_ts, values
        )

    def decode_block(self, rows: Sequence[bytes | None]) -> RowBlock:
        """Decode many rows (None where none is stored) column by column.

        Every row of the reader's own schema has its header, null bitmap and fixed-width
        values at the same offsets, so the rows' leading parts joined are one numpy
        structured array, and each column a view of it: a few numpy calls per view, none
        per value. To keep that one shape, a missing row stands in as an all-null row with
        time 0, and a row of another schema or version is re-encoded in this one first
        (rare: rows written before a view changed).

        Raises:
            UnknownSchemaError: a row of a schema not learnt (see ``learn``).
            InvalidValueError: a row is not a row of a known codec version.
        """
        layout, fixed_end = self._layout, self._fixed_end
        uniform, odd, joined, stored = speedups.gather_rows(
            rows if isinstance(rows, list) else list(rows),
            VERSION,
            self._static,
            self._missing,
            fixed_end,
        )
        for i in odd:
            old = self.decode(uniform[i])
            uniform[i] = self.encode(old.event_timestamp, old.created_timestamp, old.values)
        if joined is None:
            joined = b"".join([r[:fixed_end] for r in uniform])
        table = np.frombuffer(joined, self._prefix_dtype)
        events = (table["event"] ^ np.uint64(_SIGN)).astype(np.uint64).view(np.int64)
        bits = np.unpackbits(table["bitmap"], axis=1, bitorder="little")
        fixed = {j: table[name] for j, name in self._fixed_fields}
        strings: dict[int, list[bytes]] = {}
        lists: dict[int, ListColumn] = {}
        if layout.var:
            var = speedups.split_var(uniform, fixed_end, len(layout.var))
            for payloads, j in zip(var, layout.var, strict=True):
                kind = layout.types[j]
                if kind.element is None:
                    strings[j] = payloads
                else:
                    lists[j] = _list_column(kind, payloads)
        present = np.frombuffer(stored, np.bool_)
        nulls = bits[:, : len(self.features)].astype(np.bool_)
        return RowBlock(present, events, nulls, fixed, strings, lists)

    def _foreign_decoder(
        self, descriptors: bytes, legacy: bool
    ) -> Callable[[bytes, int], tuple[Any, ...]]:
        """A decoder for rows written under ``descriptors``, mapped onto this schema."""
        if len(descriptors) % _DESCRIPTOR.size:
            raise InvalidValueError(f"{len(descriptors)} bytes are not a field descriptor list")
        stored = []
        for offset in range(0, len(descriptors), _DESCRIPTOR.size):
            tag, code = _DESCRIPTOR.unpack_from(descriptors, offset)
            if code not in _CODE_TYPES:
                raise InvalidValueError(f"stored row has an unknown type code {code}")
            stored.append((tag, _CODE_TYPES[code]))
        layout = _Layout(stored, legacy=legacy)
        # Stored field j feeds current feature picks[j]; a retyped feature reads as null.
        picks = [self._wanted.get(field) for field in stored]
        if picks == list(range(len(self.features))):
            return layout.decode
        width = len(self.features)

        def decode(row: bytes, offset: int) -> tuple[Any, ...]:
            out: list[Any] = [None] * width
            for j, value in enumerate(layout.decode(row, offset)):
                target = picks[j]
                if target is not None:
                    out[target] = value
            return tuple(out)

        return decode

    def _explain(self, values: Sequence[Any], err: Exception) -> str:
        if len(values) != len(self.features):
            return f"expected {len(self.features)} values, got {len(values)}"
        for feature, value in zip(self.features, values, strict=True):
            if value is None:
                continue
            try:
                self._layout.check(feature.type, value)
            except (struct.error, TypeError, AttributeError, OverflowError, ValueError):
                return f"feature {feature.name!r} ({feature.type.value}) cannot hold {value!r}"
        return f"cannot encode the row: {err}"


def _micros_list(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """Python ints of µs since the epoch (None for nulls) from a timestamp or int column."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz=column.type.tz), safe=False).cast(pa.int64())
    return list(column.to_pylist())


class _Layout:
    """Packs and unpacks the null bitmap and values of one field list (``legacy``: unpacks
    version 1's, whose variable-width lengths are u32s, not varints)."""

    def __init__(self, fields: Sequence[tuple[int, ValueType]], legacy: bool = False) -> None:
        self.legacy = legacy
        self.types = [t for _, t in fields]
        self.fixed = [i for i, t in enumerate(self.types) if t in _FIXED_FORMATS]
        self.var = [i for i, t in enumerate(self.types) if t not in _FIXED_FORMATS]
        self.fixed_struct = struct.Struct(
            "<" + "".join(_FIXED_FORMATS[self.types[i]] for i in self.fixed)
        )
        self.bitmap_size = (len(self.types) + 7) // 8
        self.zeros = [False if self.types[i] is ValueType.BOOL else 0 for i in self.fixed]
        self.var_decoders = [(i, _var_decoder(self.types[i])) for i in self.var]
        storage = [*self.fixed, *self.var]
        self.field_order = [storage.index(i) for i in range(len(self.types))]

    def encode(self, values: Sequence[Any]) -> bytes:
        if len(values) != len(self.types):
            raise TypeError("wrong number of values")
        bitmap = 0
        for i, value in enumerate(values):
            if value is None:
                bitmap |= 1 << i
        fixed = [values[i] for i in self.fixed]
        if bitmap:
            fixed = [self.zeros[k] if v is None else v for k, v in enumerate(fixed)]
        parts = [bitmap.to_bytes(self.bitmap_size, "little"), self.fixed_struct.pack(*fixed)]
        for i in self.var:
            value = values[i]
            payload = b"" if value is None else _encode_var(self.types[i], value)
            parts.append(speedups.varint(len(payload)))
            parts.append(payload)
        return b"".join(parts)

    def decode(self, row: bytes, offset: int) -> tuple[Any, ...]:
        bitmap_end = offset + self.bitmap_size
        bitmap = int.from_bytes(row[offset:bitmap_end], "little")
        stored = list(self.fixed_struct.unpack_from(row, bitmap_end))
        offset = bitmap_end + self.fixed_struct.size
        legacy = self.legacy
        for i, decode in self.var_decoders:
            if legacy:
                (length,) = _U32.unpack_from(row, offset)
                offset += 4
            else:
                length, offset = speedups.py_read_length(row, offset)
            if offset + length > len(row):
                raise InvalidValueError("a stored row ends inside its variable-width values")
            stored.append(None if bitmap >> i & 1 else decode(row[offset : offset + length]))
            offset += length
        # Values were read fixed-width first, then variable-width: put them in field order.
        out = [stored[j] for j in self.field_order]
        if bitmap:
            for i in self.fixed:
                if bitmap >> i & 1:
                    out[i] = None
        return tuple(out)

    def check(self, kind: ValueType, value: Any) -> None:
        """Raise if ``value`` cannot be encoded as ``kind``."""
        if kind in _FIXED_FORMATS:
            struct.pack("<" + _FIXED_FORMATS[kind], value)
        else:
            _encode_var(kind, value)


def _encode_var(kind: ValueType, value: Any) -> bytes:
    if kind is ValueType.STRING:
        return bytes(value.encode("utf-8"))
    if kind is ValueType.BYTES:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("bytes expected")
        return bytes(value)
    if kind is ValueType.STRING_LIST:
        if isinstance(value, str) or None in value:
            raise TypeError("a list of non-null strings expected")
        encoded = [s.encode("utf-8") for s in value]
        return _U32.pack(len(encoded)) + b"".join(_U32.pack(len(s)) + s for s in encoded)
    if None in value:
        raise TypeError("lists cannot hold nulls")
    return struct.pack(f"<{len(value)}{_LIST_FORMATS[kind]}", *value)


def _list_column(kind: ValueType, payloads: list[bytes]) -> ListColumn:
    """A list feature's stored payloads as one flat column (see ``_encode_var``)."""
    if kind is ValueType.STRING_LIST:
        flat: list[bytes] = []
        lengths = []
        for payload in payloads:
            if not payload:
                lengths.append(0)
                continue
            (count,) = _U32.unpack_from(payload, 0)
            pos = 4
            for _ in range(count):
                (length,) = _U32.unpack_from(payload, pos)
                flat.append(payload[pos + 4 : pos + 4 + length])
                pos += 4 + length
            lengths.append(count)
        return ListColumn(flat, np.array(lengths, np.uint32))
    element = np.dtype(_NUMPY_TYPES[kind.element])  # type: ignore[index]
    values = np.frombuffer(b"".join(payloads), element)
    sizes = np.fromiter(map(len, payloads), np.uint32, len(payloads))
    return ListColumn(values, sizes // np.uint32(element.itemsize))


def _var_decoder(kind: ValueType) -> Callable[[bytes], Any]:
    """The decoder of one variable-width type, chosen once per layout, not per value."""
    if kind is ValueType.STRING:
        return _decode_utf8
    if kind is ValueType.BYTES:
        return bytes
    if kind is ValueType.STRING_LIST:
        return _decode_string_list
    fmt = _LIST_FORMATS[kind]
    if sys.byteorder == "little":
        # The payload is little-endian already: view it as the machine's own array.
        return lambda payload: memoryview(payload).cast(fmt).tolist()  # type: ignore[call-overload]
    size = struct.calcsize(fmt)
    return lambda payload: list(struct.unpack(f"<{len(payload) // size}{fmt}", payload))


def _decode_utf8(payload: bytes) -> str:
    return payload.decode("utf-8")


def _decode_string_list(payload: bytes) -> list[str]:
    (count,) = _U32.unpack_from(payload, 0)
    out, pos = [], 4
    for _ in range(count):
        (length,) = _U32.unpack_from(payload, pos)
        out.append(payload[pos + 4 : pos + 4 + length].decode("utf-8"))
        pos += 4 + length
    return out
