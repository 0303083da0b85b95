import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.core import InvalidValueError, decode_key, encode_key, encode_key_columns
from ferry.core.keys import encode_int_keys, encode_str_keys

int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
key_values = st.one_of(int64s, st.text())


@given(st.lists(key_values, min_size=1, max_size=4))
def test_round_trip(values: list[int | str]) -> None:
    assert decode_key(encode_key(values)) == tuple(values)


@given(int64s, int64s)
def test_integer_byte_order_is_numeric_order(a: int, b: int) -> None:
    assert (encode_key([a]) < encode_key([b])) == (a < b)


@given(st.lists(st.tuples(int64s, st.text()), min_size=1, max_size=50))
def test_columns_encode_like_single_keys(rows: list[tuple[int, str]]) -> None:
    ints = pa.array([r[0] for r in rows], pa.int64())
    strs = pa.array([r[1] for r in rows], pa.string())
    assert encode_key_columns([ints, strs]) == [encode_key(list(r)) for r in rows]


@given(st.lists(int64s, max_size=20), st.lists(st.text(), max_size=20))
def test_batch_encoders_agree_with_encode_key(ints: list[int], texts: list[str]) -> None:
    assert encode_int_keys(ints) == [encode_key([v]) for v in ints]
    assert encode_str_keys(texts) == [encode_key([v]) for v in texts]


def test_int32_and_int64_columns_encode_alike() -> None:
    values = [-5, 0, 7, 2**31 - 1]
    assert encode_key_columns([pa.array(values, pa.int32())]) == encode_key_columns(
        [pa.array(values, pa.int64())]
    )


def test_multi_key_boundaries_are_unambiguous() -> None:
    assert encode_key(["ab", "c"]) != encode_key(["a", "bc"])


@pytest.mark.parametrize("bad", [1.5, None, True, b"x", 2**63])
def test_rejects_values_that_are_not_keys(bad: object) -> None:
    with pytest.raises(InvalidValueError):
        encode_key([bad])  # type: ignore[list-item]


def test_rejects_null_and_float_columns() -> None:
    with pytest.raises(InvalidValueError, match="nulls"):
        encode_key_columns([pa.array([1, None])])
    with pytest.raises(InvalidValueError, match="integer or string"):
        encode_key_columns([pa.array([1.5])])


def test_rejects_garbage_bytes() -> None:
    with pytest.raises(InvalidValueError):
        decode_key(b"\x07abc")
