"""The compiled per-row loops (``ferry.core._speedups``) against their Python counterparts
and the oracles they stand in for: the same output for any input, the same refusals."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.core import Feature, RowCodec, ValueType, speedups
from ferry.core.codec import VERSION
from ferry.core.errors import InvalidValueError
from tests.core.test_codec import ALL_FEATURES, rows

CAN_BUILD = (shutil.which("cc") or shutil.which("gcc")) is not None and (
    Path(sysconfig.get_paths()["include"]) / "Python.h"
).exists()
compiled = speedups.COMPILED
needs_compiled = pytest.mark.skipif(compiled is None, reason="no C compiler or Python headers")
int64s = st.integers(-(2**63), 2**63 - 1)


def test_the_extension_is_built_wherever_it_can_be() -> None:
    # scripts/setup.sh builds it; a machine that could and did not would test Python only.
    assert (compiled is not None) == CAN_BUILD


@needs_compiled
@given(st.lists(st.lists(st.binary(max_size=300), min_size=2, max_size=2), max_size=20))
def test_split_var_cuts_what_the_encoder_wrote(payloads: list[list[bytes]]) -> None:
    head = b"\x02" + bytes(20) + b"\x07"
    rows = [head + b"".join(speedups.varint(len(p)) + p for p in pair) for pair in payloads]
    expected = [[pair[j] for pair in payloads] for j in range(2)]
    assert compiled.split_var(rows, len(head), 2) == expected
    assert speedups.py_split_var(rows, len(head), 2) == expected


@pytest.mark.parametrize(
    "row",
    [bytes(21), bytes(21) + b"\x05abc", bytes(21) + b"\xff\xff\xff\xff\xff\x01"],
    ids=["no-length", "payload-cut", "length-over-5-bytes"],
)
def test_split_var_refuses_a_row_that_ends_inside_its_values(row: bytes) -> None:
    with pytest.raises(InvalidValueError):
        speedups.py_split_var([row], 21, 1)
    if compiled is not None:
        with pytest.raises(ValueError, match="row 0 ends inside"):
            compiled.split_var([row], 21, 1)


@needs_compiled
@given(st.lists(rows(), min_size=1, max_size=8), st.lists(st.sampled_from("mno"), max_size=8))
def test_gather_rows_sorts_rows_as_the_python_one(
    drawn: list[tuple[int, int | None, list[Any]]], shapes: list[str]
) -> None:
    mine, other = RowCodec(ALL_FEATURES), RowCodec(ALL_FEATURES[:3])
    stored: list[bytes | None] = []
    shapes = (shapes + ["m"] * len(drawn))[: len(drawn)]
    for (event, created, values), shape in zip(drawn, shapes, strict=True):
        codec = mine if shape == "m" else other
        row = codec.encode(event, created, values if shape == "m" else values[:3])
        stored.append(None if shape == "n" else row)
    missing = mine.encode(0, None, [None] * len(ALL_FEATURES))
    fixed_end = mine._fixed_end
    args = (stored, VERSION, mine.fingerprint.to_bytes(4, "big"), missing, fixed_end)
    assert compiled.gather_rows(*args) == speedups.py_gather_rows(*args)
    _, odd, _, present = compiled.gather_rows(*args)
    assert odd == [i for i, r in enumerate(stored) if r is not None and r[17:21] != args[2]]
    assert present == bytes(r is not None for r in stored)


@needs_compiled
@given(st.lists(int64s, max_size=40))
def test_varints_are_the_python_ones(values: list[int]) -> None:
    expected = speedups.py_varints(values)
    assert compiled.varints(values) == expected
    assert compiled.varints(np.array(values, np.int64)) == expected
    assert compiled.varints(np.array(values, np.int64).view(np.uint64)) == expected


def test_varints_refuse_what_is_not_8_byte_integers() -> None:
    if compiled is None:
        pytest.skip("no C compiler or Python headers")
    with pytest.raises(TypeError):
        compiled.varints(np.zeros(3, np.float64))
    with pytest.raises(TypeError):
        compiled.varints(np.zeros(3, np.int32))
    with pytest.raises(TypeError):
        compiled.varints(["x"])


@needs_compiled
@given(st.lists(st.binary(max_size=300), max_size=20), st.binary(min_size=1, max_size=2))
def test_byte_strings_are_the_python_ones(values: list[bytes], key: bytes) -> None:
    assert compiled.byte_strings(key, values) == speedups.py_byte_strings(key, values)


@needs_compiled
@given(st.lists(st.text(), max_size=20), st.lists(int64s, max_size=20))
def test_entity_keys_are_the_python_ones(texts: list[str], ints: list[int]) -> None:
    assert compiled.str_keys(texts) == speedups.py_str_keys(texts)
    assert compiled.int_keys(ints) == speedups.py_int_keys(ints)
    assert compiled.int_keys([2**64 + 5, -(2**64)]) == speedups.py_int_keys([2**64 + 5, -(2**64)])


def test_the_compiled_ones_refuse_wrong_types() -> None:
    if compiled is None:
        pytest.skip("no C compiler or Python headers")
    with pytest.raises(TypeError):
        compiled.str_keys(["a", 1])
    with pytest.raises(TypeError):
        compiled.int_keys([1, "a"])
    with pytest.raises(TypeError):
        compiled.split_var([bytes(22), None], 21, 1)
    with pytest.raises(TypeError):
        compiled.gather_rows([1], VERSION, b"abcd", b"\x00" * 30, 22)
    with pytest.raises(TypeError):
        compiled.byte_strings(b"\x0a", ["text"])


def test_decode_block_is_the_same_through_either(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = RowCodec([Feature("s", ValueType.STRING), Feature("l", ValueType.FLOAT_LIST)])
    stored = [codec.encode(i, None, [f"v{i}" * i, [float(i)] * (i % 3)]) for i in range(40)]
    stored[5] = None
    fast = codec.decode_block(stored)
    for name in ("split_var", "gather_rows"):
        monkeypatch.setattr(speedups, name, getattr(speedups, f"py_{name}"))
    slow = codec.decode_block(stored)
    assert fast.strings[0] == slow.strings[0]
    assert fast.lists[1].values.tolist() == slow.lists[1].values.tolist()
    assert fast.present.tolist() == slow.present.tolist()
    assert fast.event_timestamps.tolist() == slow.event_timestamps.tolist()
