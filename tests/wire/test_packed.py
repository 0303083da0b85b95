"""The array-to-wire response path against a plain oracle: every row decoded one by one and
the statuses decided row by row, the response parsed back with the generated classes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.api.types.v1 import types_pb2
from ferry.core import Feature, RowCodec, ValueType, speedups
from ferry.core.errors import UnknownSchemaError
from ferry.core.repo_file import parse_repo
from ferry.server.serving import Catalog, read_features, reads
from ferry.stores.base import ReadRequest, ViewTable, WriteResult
from ferry.stores.schemas import record_schema
from ferry.wire.columns import column_type, column_values
from ferry.wire.packed import varint, varints
from tests.core.test_codec import VALUES

TYPES = list(ValueType)
YAML = """
project: p
offline_store: {root: data}
entities:
  thing: {join_keys: {id: int64}}
feature_views:
  v:
    entities: [thing]
    source: {path: v, timestamp_field: ts}
    ttl: 1h
    features:
"""
REPO = parse_repo(
    YAML + "".join(f"      f_{t.name.lower()}: {t.value}\n" for t in TYPES), "/r/repo.yaml"
)
CATALOG = Catalog(REPO)
VIEW = REPO.views["v"]
# An older schema of the view: every other feature, so its rows lack the rest.
OLD = RowCodec([f for i, f in enumerate(VIEW.features) if i % 2 == 0])
HOUR = 3_600_000_000
ZERO = {t: ([] if t.element else (False if t is ValueType.BOOL else 0)) for t in TYPES}
ZERO.update({ValueType.STRING: "", ValueType.BYTES: b"", ValueType.DOUBLE: 0.0})


class Fixed:
    """A store that answers the view's read with ``rows``, and holds the schemas recorded
    (the old schema's, as the writer of its rows would have), for a reader to learn."""

    schemas: ClassVar[dict[bytes, bytes]] = {}

    def __init__(self, rows: list[bytes | None]) -> None:
        self.rows = rows

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        (request,) = requests
        if request.table.view.endswith("#schemas"):
            return [[self.schemas.get(key) for key in request.keys]]
        return [self.rows]

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        self.schemas.update(rows)
        return WriteResult(len(rows), 0)


asyncio.run(record_schema(Fixed([]), CATALOG.tables["v"], OLD))  # type: ignore[arg-type]


@st.composite
def stored_rows(draw: st.DrawFn) -> list[tuple[str, int, list[Any]]]:
    """Per entity row: absent, or a row of the current or the old schema, fresh or stale."""
    out = []
    for _ in range(draw(st.integers(1, 20))):
        shape = draw(st.sampled_from(["absent", "current", "old"]))
        age = draw(st.sampled_from([0, HOUR // 2, 2 * HOUR]))
        features = VIEW.features if shape != "old" else OLD.features
        values = [draw(st.none() | VALUES[f.type]) for f in features]
        out.append((shape, age, values))
    return out


def oracle(rows: list[bytes | None], now: int) -> dict[str, tuple[list[Any], list[int], list[int]]]:
    codec = CATALOG.codecs["v"]
    decoded = [None if r is None else codec.decode(r) for r in rows]
    out = {}
    for j, feature in enumerate(VIEW.features):
        values, statuses, times = [], [], []
        for row in decoded:
            if row is None:
                values.append(ZERO[feature.type])
                statuses.append(types_pb2.VALUE_STATUS_NOT_FOUND)
                times.append(0)
                continue
            value = row.values[j]
            if value is None:
                status = types_pb2.VALUE_STATUS_NULL_VALUE
            elif row.event_timestamp <= now - HOUR:
                status = types_pb2.VALUE_STATUS_OUTSIDE_MAX_AGE
            else:
                status = types_pb2.VALUE_STATUS_PRESENT
            values.append(ZERO[feature.type] if value is None else value)
            statuses.append(status)
            times.append(row.event_timestamp)
        out[f"v:{feature.name}"] = (values, statuses, times)
    return out


LOOPS = ("split_var", "gather_rows", "varints", "byte_strings", "str_keys", "int_keys")


@pytest.mark.parametrize("loops", ["compiled", "python"])
@pytest.mark.parametrize("small_block", [0, 1_000], ids=["arrays", "python-values"])
@given(drawn=stored_rows())
def test_columns_match_a_row_by_row_oracle(
    small_block: int, loops: str, drawn: list[tuple[str, int, list[Any]]]
) -> None:
    # "compiled": ferry.core._speedups where built (the test of the extension that matters);
    # "python": its pure-Python counterparts, as where it is not built.
    saved = reads.SMALL_BLOCK, {name: getattr(speedups, name) for name in LOOPS}
    reads.SMALL_BLOCK = small_block
    if loops == "python":
        for name in LOOPS:
            setattr(speedups, name, getattr(speedups, f"py_{name}"))
    try:
        check_against_oracle(drawn)
    finally:
        reads.SMALL_BLOCK = saved[0]
        for name, function in saved[1].items():
            setattr(speedups, name, function)


def check_against_oracle(drawn: list[tuple[str, int, list[Any]]]) -> None:
    now = time.time_ns() // 1000
    codec = CATALOG.codecs["v"]
    rows: list[bytes | None] = []
    for shape, age, values in drawn:
        writer = {"absent": None, "current": codec, "old": OLD}[shape]
        rows.append(None if writer is None else writer.encode(now - age - 1, None, values))
    plan = CATALOG.plan_for_refs(["v:*"])
    entities = {"id": list(range(len(rows)))}
    encoded = asyncio.run(read_features(Fixed(rows), plan, entities))
    expected = oracle(rows, now)
    assert len(encoded) == len(VIEW.features)
    for raw, feature in zip(encoded, VIEW.features, strict=True):
        column = types_pb2.FeatureColumn.FromString(raw)
        assert column.name == f"v:{feature.name}"
        assert column.type == types_pb2.ValueType.Value("VALUE_TYPE_" + feature.type.name)
        assert column_type(column.values) is feature.type
        values, statuses, times = expected[column.name]
        assert list(column.statuses) == statuses
        assert list(column.event_timestamp_micros) == times
        assert column_values(column.values) == values


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40))
def test_varints_are_protobufs_packed_int64s(values: list[int]) -> None:
    message = types_pb2.Int64Values(values=values).SerializeToString()
    body = varints(np.array(values, np.int64))
    assert message == (b"\x0a" + varint(len(body)) + body if values else b"")


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=40))
def test_negative_int32s_take_ten_bytes_as_in_protobuf(values: list[int]) -> None:
    message = types_pb2.Int32Values(values=values).SerializeToString()
    body = varints(np.array(values, np.int32))
    assert message == b"\x0a" + varint(len(body)) + body


@pytest.mark.parametrize(
    "values",
    [[1_700_000_000_000_000 + i for i in range(40)], list(range(40)), [0] * 20, [-1] * 20],
    ids=["timestamps", "small", "zeros", "negative"],
)
def test_varints_of_equal_sized_values(values: list[int]) -> None:
    message = types_pb2.Int64Values(values=values).SerializeToString()
    body = varints(np.array(values, np.int64))
    assert message == b"\x0a" + varint(len(body)) + body


def test_decode_block_reads_a_row_written_by_a_newer_schema() -> None:
    """A reader that lost a feature still reads rows that carry it (skipping it)."""
    newer = RowCodec([*VIEW.features, Feature("added_later", ValueType.INT64)])
    values = [ZERO[f.type] for f in VIEW.features]
    row = newer.encode(5, None, [*values, 7])
    reader = RowCodec(VIEW.features)
    with pytest.raises(UnknownSchemaError):
        reader.decode_block([row, None])
    reader.learn(newer.descriptors)
    block = reader.decode_block([row, None])
    assert block.present.tolist() == [True, False]
    assert block.event_timestamps.tolist() == [5, 0]
    assert not block.nulls[0].any()
    assert block.nulls[1].all()
