"""Mangled requests (random bytes, valid requests with bytes flipped or cut) get a status
that names a client error or data, never INTERNAL or UNKNOWN: a bounded, seeded fuzz over a
real server."""

from __future__ import annotations

import random

import grpc
import pytest

from ferry.api.serving.v1 import serving_pb2
from ferry.api.types.v1 import types_pb2
from ferry.server import FerryServer

EXAMPLES_PER_METHOD = 150
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED,  # GetModelFeatures: no registry here
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def valid_requests() -> dict[str, bytes]:
    lookup = serving_pb2.GetOnlineFeaturesRequest(feature_service="fraud_v1")
    lookup.entities["user_id"].int64_values.values.extend([1, 2, 3])
    lookup.entities["merchant_id"].string_values.values.extend(["m0000001", "m2", "m3"])
    by_refs = serving_pb2.GetOnlineFeaturesRequest()
    by_refs.refs.refs.extend(["user_stats:*", "merchant_stats:category"])
    by_refs.entities["user_id"].int64_values.values.append(5)
    by_refs.entities["merchant_id"].string_values.values.append("m0000005")
    push = serving_pb2.PushFeaturesRequest(view="user_stats")
    push.columns["user_id"].int64_values.values.append(424242)
    push.columns["event_timestamp"].timestamp_values.micros.append(1_700_000_000_000_000)
    push.columns["risk_embedding"].float_list_values.values.extend([1.0, 2.0])
    push.columns["risk_embedding"].float_list_values.lengths.append(2)
    push.null_rows["last_country"].indexes.append(0)
    model = serving_pb2.GetModelFeaturesRequest(model_name="m")
    model.entities["user_id"].CopyFrom(types_pb2.Column())
    return {
        "GetOnlineFeatures": lookup.SerializeToString(),
        "GetOnlineFeatures/refs": by_refs.SerializeToString(),
        "PushFeatures": push.SerializeToString(),
        "GetModelFeatures": model.SerializeToString(),
    }


def mangled(seed: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 64))
    data = bytearray(seed)
    if kind == 1:
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 2:
        return bytes(data[: rng.randrange(len(data))])
    position = rng.randrange(len(data))
    return bytes(data[:position]) + rng.randbytes(rng.randrange(1, 8)) + bytes(data[position:])


@pytest.mark.parametrize("case", list(valid_requests()))
async def test_mangled_requests_never_get_internal(server: FerryServer, case: str) -> None:
    method = case.split("/")[0]
    seed = valid_requests()[case]
    rng = random.Random(f"{case}-1")
    seen: dict[grpc.StatusCode, int] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(f"/ferry.api.serving.v1.ServingService/{method}")
        for _ in range(EXAMPLES_PER_METHOD):
            payload = mangled(seed, rng)
            code, details = grpc.StatusCode.OK, ""
            try:
                await call(payload, timeout=5)
            except grpc.aio.AioRpcError as err:
                code, details = err.code(), err.details()
            assert code in ALLOWED, (payload, details)
            seen[code] = seen.get(code, 0) + 1
    assert seen.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > 0  # the fuzz reached the checks
