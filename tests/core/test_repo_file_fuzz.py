"""Any input file gives problems or a repo, never a traceback (bounded fuzzing)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.core import InvalidValueError, RepoError, load_repo, parse_repo
from ferry.core.timestamps import MAX_DURATION_S, parse_duration
from tests.e2e.fraud import SAMPLE_REPO

SAMPLE = SAMPLE_REPO.read_text()
KEYS = st.sampled_from(
    [
        "project",
        "offline_store",
        "root",
        "online_store",
        "entities",
        "join_keys",
        "feature_views",
        "source",
        "path",
        "timestamp_field",
        "created_timestamp_field",
        "ttl",
        "features",
        "type",
        "feature_services",
        "description",
        "user",
        "x",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.sampled_from(["int64", "list<float>", "2d", "99999999999999999999d", "../..", "*", ":"])
    | st.text(max_size=20)
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)


def parse_or_problems(text: str) -> None:
    """A repo, or a RepoError listing problems; any other exception fails the test."""
    try:
        parse_repo(text, "fuzz.yaml")
    except RepoError as err:
        problems = err.problems
    else:
        return
    assert problems
    assert all(str(p) for p in problems)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_structured_documents(document: object) -> None:
    parse_or_problems(yaml.safe_dump(document))


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    parse_or_problems(text)


@settings(max_examples=200)
@given(st.integers(0, len(SAMPLE) - 1), st.integers(1, 40), st.text(max_size=10))
def test_the_sample_with_a_piece_replaced(at: int, length: int, piece: str) -> None:
    parse_or_problems(SAMPLE[:at] + piece + SAMPLE[at + length :])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"project: p\n\xff\xfe bad bytes\n", "not UTF-8 text: byte 11 is 0xff"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
def test_odd_files_are_problems(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "repo.yaml"
    path.write_bytes(content)
    with pytest.raises(RepoError) as caught:
        load_repo(path)
    assert message in str(caught.value)


@pytest.mark.parametrize("ttl", ["99999999999999999999d", "36501d", "1" * 5000 + "s"])
def test_durations_have_a_maximum(ttl: str) -> None:
    with pytest.raises(InvalidValueError, match="longer than the maximum duration"):
        parse_duration(ttl)
    text = SAMPLE.replace("ttl: 2d", f"ttl: {ttl}", 1)
    assert text != SAMPLE
    with pytest.raises(RepoError, match="maximum duration"):
        parse_repo(text, "repo.yaml")


def test_the_maximum_duration_itself_is_accepted() -> None:
    assert parse_duration("36500d") == MAX_DURATION_S * 1_000_000
