"""The access log's failure lines, limited per method and code (the real outage, through a
TCP proxy in front of redis-server, is in test_fault_proxy)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from ferry.server.logs import FailureLog, access_log

METHOD = "/ferry.api.serving.v1.ServingService/GetOnlineFeatures"


def _fail(failures: FailureLog, code: grpc.StatusCode, times: int) -> None:
    """``times`` failed calls, each logged as the interceptor does: when admitted."""
    for _ in range(times):
        if failures.admits(METHOD, code):
            access_log.warning("failed", extra={"fields": {"method": METHOD, "code": code.name}})


def _access(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records if r.name == "ferry.access"]  # type: ignore[attr-defined]


async def test_each_method_and_code_has_its_share_and_the_rest_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="ferry.access")
    failures = FailureLog(per_second=50, window_s=0.2)  # 10 lines a window
    _fail(failures, grpc.StatusCode.UNAVAILABLE, 25)
    _fail(failures, grpc.StatusCode.NOT_FOUND, 3)
    assert len(_access(caplog)) == 13
    await asyncio.sleep(0.3)  # the window ends: one line counts the 15 held back
    held = [f for f in _access(caplog) if "held_back" in f]
    assert held == [{"method": METHOD, "code": "UNAVAILABLE", "held_back": 15}]
    _fail(failures, grpc.StatusCode.UNAVAILABLE, 2)  # a new window: logged again
    assert len(_access(caplog)) == 16
    await asyncio.sleep(0.3)
    assert len(_access(caplog)) == 16  # nothing held back, nothing to count


async def test_a_window_ended_by_the_next_failure_is_counted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The next failure may end a window before its timer runs: the count comes then, and
    the timer, finding the window gone, says nothing."""
    caplog.set_level("INFO", logger="ferry.access")
    now = [0.0]
    failures = FailureLog(per_second=10, window_s=0.1, clock=lambda: now[0])  # 1 a window
    _fail(failures, grpc.StatusCode.UNAVAILABLE, 4)
    now[0] = 0.15  # no await in between: the window's timer has not run
    _fail(failures, grpc.StatusCode.UNAVAILABLE, 1)
    assert [f["held_back"] for f in _access(caplog) if "held_back" in f] == [3]
    await asyncio.sleep(0.2)  # the old window's timer runs now
    assert [f["held_back"] for f in _access(caplog) if "held_back" in f] == [3]
    assert len(_access(caplog)) == 3  # two calls logged, one count


@pytest.mark.parametrize(
    ("per_second", "code"), [(0, grpc.StatusCode.UNAVAILABLE), (1, grpc.StatusCode.INTERNAL)]
)
async def test_internal_errors_and_no_limit_log_every_failure(
    caplog: pytest.LogCaptureFixture, per_second: int, code: grpc.StatusCode
) -> None:
    caplog.set_level("INFO", logger="ferry.access")
    _fail(FailureLog(per_second=per_second), code, 30)
    assert len(_access(caplog)) == 30
