"""``--entity`` options: one parser for ``ferry get`` and ``ferry lookup``."""

from __future__ import annotations

import pytest

from ferry.cli.entity_options import parse_entity_options, raw_entity_options
from ferry.cli.lookup import entity_keys
from ferry.core import InvalidValueError, load_repo
from tests.e2e.fraud import SAMPLE_REPO


def test_values_are_integers_only_when_every_one_is() -> None:
    assert parse_entity_options(["user_id=1,2", "merchant_id=m1,7", "code:string=01,02"]) == {
        "user_id": [1, 2],
        "merchant_id": ["m1", "7"],
        "code": ["01", "02"],
    }


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["user_id"], "expected KEY=V1,V2"),
        (["=1"], "expected KEY=V1,V2"),
        (["user_id=1", "user_id=2"], "given twice"),
        (["user_id:float=1"], "the type hint is string or int"),
        (["user_id:int=a"], "values must be integers"),
        (["user_id=1,2", "merchant_id=m1"], "the same number of values"),
    ],
)
def test_bad_options_say_what_is_wrong(specs: list[str], message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        parse_entity_options(specs)


def test_raw_options_keep_what_was_written() -> None:
    assert raw_entity_options(["merchant_id=007"]) == {"merchant_id": ("", ["007"])}


def test_lookup_types_keys_by_the_view() -> None:
    view = load_repo(SAMPLE_REPO).view("user_merchant_stats")
    keys = entity_keys(view, ["merchant_id=007,m2", "user_id=1,2"])
    assert keys == [(1, "007"), (2, "m2")]
    with pytest.raises(InvalidValueError, match="values must be integers"):
        entity_keys(view, ["merchant_id=m1", "user_id=x"])
    with pytest.raises(InvalidValueError, match="exactly its join keys"):
        entity_keys(view, ["user_id=1"])
