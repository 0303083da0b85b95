"""Managed-Redis settings against a real redis-server with TLS and an ACL user: rediss://
with the right CA works (the shared contract suite runs over it too); a wrong CA or server
name, or a wrong password, is a configuration error naming no secret; bad parameters are
refused when the store is opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.core.errors import StoreError
from ferry.stores import ReadRequest, ViewTable, open_online_store
from ferry.stores.resp import StoreAuthenticationError
from tests.certs import TLS_FAULTS, tls_fault
from tests.services import RedisServer

VIEW = ViewTable("proj", "view")


async def read_one(url: str) -> list[list[bytes | None]]:
    store = open_online_store(url)
    try:
        return await store.read([ReadRequest(VIEW, [b"k"])])
    finally:
        await store.close()


async def test_rediss_with_the_ca_and_acl_user_reads(rediss_url: str) -> None:
    assert await read_one(rediss_url) == [[None]]


@pytest.mark.parametrize("change", TLS_FAULTS)
async def test_a_wrong_ca_name_or_password_is_a_configuration_error(
    tls_redis: tuple[RedisServer, str], tmp_path: Path, change: str
) -> None:
    server, ca = tls_redis
    password, query = tls_fault(change, "s3cret-pass", f"ca={ca}", tmp_path)
    url = f"rediss://ferry:{password}@127.0.0.1:{server.tls_port}/0?{query}"
    with pytest.raises(StoreAuthenticationError) as caught:
        await read_one(url)
    assert password not in str(caught.value)
    assert "s3cret-pass" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379/0?ca=/x.pem", "TLS parameters need a rediss:// URL"),
        ("rediss://127.0.0.1:6379/0?verify=no", "unknown Redis URL parameter(s): verify"),
        ("rediss://127.0.0.1:6379/0?cert=/a.pem", "needs both cert= and key="),
        ("rediss://127.0.0.1:6379/0?ca=/no/such.pem", "cannot use the Redis TLS files"),
    ],
)
def test_bad_tls_parameters_are_refused_at_open(url: str, message: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_online_store(url)
    assert message in str(caught.value)
