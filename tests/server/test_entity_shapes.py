"""Entities in every shape a Python user has, through the client to a real server: each
gives exactly what a dict of lists gives; wrong types are named with what they hold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ferry.client import AsyncFerryClient, InvalidArgumentError
from ferry.core import InvalidValueError
from ferry.server import FerryServer

USERS = [1, 2, 999_999]
MERCHANTS = ["m0000001", "m0000002", "m0000003"]
FEATURES = ["user_stats:txn_count_7d", "merchant_stats:category"]

SHAPES: dict[str, Any] = {
    "numpy int64 and str": {
        "user_id": np.array(USERS, dtype=np.int64),
        "merchant_id": np.array(MERCHANTS),
    },
    "numpy int32 and object": {
        "user_id": np.array(USERS, dtype=np.int32),
        "merchant_id": np.array(MERCHANTS, dtype=object),
    },
    "pandas Series": {"user_id": pd.Series(USERS), "merchant_id": pd.Series(MERCHANTS)},
    "pandas DataFrame": pd.DataFrame({"user_id": USERS, "merchant_id": MERCHANTS}),
    "pyarrow Table": pa.table({"user_id": USERS, "merchant_id": MERCHANTS}),
    "pyarrow RecordBatch": pa.RecordBatch.from_pydict({"user_id": USERS, "merchant_id": MERCHANTS}),
    "pyarrow arrays": {"user_id": pa.array(USERS), "merchant_id": pa.array(MERCHANTS)},
    "tuples": {"user_id": tuple(USERS), "merchant_id": tuple(MERCHANTS)},
    "lists of numpy scalars": {
        "user_id": list(np.array(USERS)),
        "merchant_id": list(np.array(MERCHANTS)),
    },
    "row dicts": [{"user_id": u, "merchant_id": m} for u, m in zip(USERS, MERCHANTS, strict=True)],
}


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_every_shape_gives_what_a_dict_of_lists_gives(
    server: FerryServer, shape: str
) -> None:
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        baseline = await client.get_online_features(
            entities={"user_id": USERS, "merchant_id": MERCHANTS}, features=FEATURES
        )
        result = await client.get_online_features(entities=SHAPES[shape], features=FEATURES)
    assert result.to_dict() == baseline.to_dict()
    assert [f.statuses for f in result] == [f.statuses for f in baseline]


async def test_feast_entity_rows(server: FerryServer) -> None:
    rows = [{"user_id": u, "merchant_id": m} for u, m in zip(USERS, MERCHANTS, strict=True)]
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        by_rows = await client.get_online_features(entity_rows=rows, features=FEATURES)
        by_columns = await client.get_online_features(
            entities={"user_id": USERS, "merchant_id": MERCHANTS}, features=FEATURES
        )
        with pytest.raises(InvalidValueError, match="exactly one of entities= and entity_rows="):
            await client.get_online_features(entities=rows, entity_rows=rows, features=FEATURES)
    assert by_rows.to_dict() == by_columns.to_dict()


@pytest.mark.parametrize(
    ("entities", "message"),
    [
        ({"user_id": np.array([1, 2], dtype=np.uint64)}, "column 'user_id' holds uint64"),
        ({"user_id": [1, "two"]}, "column 'user_id' mixes value types"),
        ({"user_id": np.array([None, None])}, "column 'user_id' holds only nulls"),
        ({"user_id": 5}, "column 'user_id' must be a list or an array of values, got int"),
        ([1, 2], "a list of entities must hold one dict per row"),
        ("user_id=1", "entities must be a dict of columns"),
        # protobuf's own ValueError before ("Value out of range: ..."), naming nothing:
        ({"user_id": [2**70]}, "column 'user_id' .int64. holds a value it cannot carry"),
    ],
)
async def test_wrong_shapes_and_types_are_named(
    server: FerryServer, entities: Any, message: str
) -> None:
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(InvalidValueError, match=message):
            await client.get_online_features(entities=entities, features=["user_stats:*"])


async def test_features_as_one_string_is_named(server: FerryServer) -> None:
    """It was read letter by letter: "feature reference 'u' is not of the form ..."."""
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(InvalidValueError, match=r"pass \['user_stats:txn_count_7d'\]"):
            await client.get_online_features(
                entities={"user_id": [1]}, features="user_stats:txn_count_7d"
            )


async def test_a_float_array_for_an_integer_key_is_refused_by_the_server(
    server: FerryServer,
) -> None:
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(InvalidArgumentError) as caught:
            await client.get_online_features(
                entities={"user_id": np.array([1.0, 2.0])}, features=["user_stats:*"]
            )
    assert caught.value.reason == "WRONG_JOIN_KEY_TYPE"
    assert "holds double" in str(caught.value)


async def test_a_push_from_a_dataframe(server: FerryServer) -> None:
    now = pd.Timestamp.now(tz="UTC").floor("s")
    frame = pd.DataFrame(
        {
            "user_id": [777_001, 777_002],
            "event_timestamp": [now, now],
            "txn_count_7d": [3, 4],
            "txn_sum_30d": [None, None],  # all null: no type to tell, pushed as null
        }
    )
    async with AsyncFerryClient(f"127.0.0.1:{server.port}") as client:
        pushed = await client.push("user_stats", frame, missing_features_are_null=True)
        back = await client.get_online_features(
            entities={"user_id": np.array([777_001, 777_002])}, features=["user_stats:txn_count_7d"]
        )
    assert pushed.rows_written == 2
    assert back["user_stats:txn_count_7d"].values == [3, 4]
