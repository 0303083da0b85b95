"""Client arguments every call would fail on are refused when the client is made, naming
what is wrong (a port past 65535 connected elsewhere: gRPC wraps it, 99999 is 34463)."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.client import AsyncFerryClient, FerryClient
from ferry.core.errors import InvalidValueError


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("127.0.0.1:99999", "server target '127.0.0.1:99999': '99999' is not a port (1 to 65535)"),
        ("127.0.0.1:0", "'0' is not a port"),
        ("[::1]:70000", "'70000' is not a port"),
        ("host:abc", "'abc' is not a port"),
        ("host:", "'' is not a port"),
        ("", "the server target is empty: expected HOST:PORT"),
        ("  ", "the server target is empty"),
    ],
)
def test_a_target_no_call_could_reach_is_refused(target: str, message: str) -> None:
    for client in (FerryClient, AsyncFerryClient):
        with pytest.raises(InvalidValueError) as refused:
            client(target)
        assert message in str(refused.value)


@pytest.mark.parametrize(
    "target", ["127.0.0.1:6570", "[::1]:6570", "localhost", "::1", "dns:///h:1", "unix:/tmp/s"]
)
def test_targets_grpc_takes_are_passed_on(target: str) -> None:
    FerryClient(target).close()


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), float("inf"), True, "1"])
def test_a_default_timeout_every_call_would_fail_on_is_refused(timeout_s: Any) -> None:
    with pytest.raises(InvalidValueError, match="timeout_s must be a finite number of seconds"):
        FerryClient("127.0.0.1:6570", timeout_s=timeout_s)
