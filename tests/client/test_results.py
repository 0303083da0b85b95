"""Decoding responses (pure logic): the entity keys of the request lead every way out, and
to_pandas without pandas says which extra to install."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest

from ferry.api.serving.v1 import serving_pb2
from ferry.api.types.v1 import types_pb2
from ferry.client._requests import online_features_request
from ferry.client._results import decode_online_features


def answer() -> serving_pb2.GetOnlineFeaturesResponse:
    """One timestamp feature over two rows: the first PRESENT, the second NOT_FOUND."""
    response = serving_pb2.GetOnlineFeaturesResponse(row_count=2)
    column = response.features.add(name="v:seen_at")
    column.values.timestamp_values.micros.extend([1_000_000, 0])
    column.statuses.extend([types_pb2.VALUE_STATUS_PRESENT, types_pb2.VALUE_STATUS_NOT_FOUND])
    column.event_timestamp_micros.extend([2_000_000, 0])
    return response


def test_entity_keys_lead_in_the_callers_order() -> None:
    # A protobuf map keeps no order: the caller's order must survive the request.
    names = ["zeta", "alpha", "mid"]
    _, keys = online_features_request(["v:seen_at"], None, {n: [1, 2] for n in names})
    result = decode_online_features(answer(), keys)
    assert list(result.to_dict()) == [*names, "v:seen_at"]
    assert result.to_arrow().column_names == [*names, "v:seen_at"]


def test_timestamps_are_datetimes_and_a_missing_row_has_no_event_time() -> None:
    result = decode_online_features(answer())
    feature = result["v:seen_at"]
    assert feature.values == [datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), None]
    assert feature.event_timestamps == [datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC), None]


def test_an_instant_past_year_9999_stays_a_count() -> None:
    response = answer()
    response.features[0].values.timestamp_values.micros[0] = 2**62
    assert decode_online_features(response)["v:seen_at"].values[0] == 2**62


def test_to_pandas_without_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"ferry-features\[pandas\]"):
        decode_online_features(answer()).to_pandas()
