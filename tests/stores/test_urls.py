"""Store URLs: every malformed one is one StoreError naming the part that is wrong, with
its password redacted (a bad port or an open bracket was a ValueError traceback)."""

from __future__ import annotations

import pytest

from ferry.core.errors import StoreError
from ferry.stores import DynamoConfig, open_online_store

SECRET = "s3cr3t-in-url"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"redis://:{SECRET}@127.0.0.1:abc/0", "Port could not be cast to integer value"),
        (f"redis://:{SECRET}@127.0.0.1:99999/0", "Port out of range"),
        (f"rediss://:{SECRET}@127.0.0.1:6379/x", "the database 'x' is not a number"),
        (f"redis://:{SECRET}@127.0.0.1:6379/-1", "the database '-1' is not a number"),
        (f"redis://:{SECRET}@:6379/0", "expected redis://HOST:PORT/DB"),
        (f"redis://:{SECRET}@[::1/0", "Invalid IPv6 URL"),
        (f"redis+cluster://:{SECRET}@127.0.0.1:x", "node '127.0.0.1:x': Port could not be cast"),
        (f"redis+cluster://:{SECRET}@127.0.0.1", "node '127.0.0.1': expected HOST:PORT"),
        (f"redis+cluster://:{SECRET}@[::1", "Invalid IPv6 URL"),
        (f"redis://:{SECRET}@127.0.0.1:6379/0?ca=x", "TLS parameters need a rediss:// URL"),
        (f"dynamodb://?region=us-east-1&endpoint_url=http://u:{SECRET}@h", "expected dynamodb"),
        (
            f"dynamodb://tbl?regoin=x&endpoint_url=http://u:{SECRET}@h",
            "unknown parameter(s) regoin",
        ),
        (
            f"dynamodb://tbl?consistent_read=yes&endpoint_url=http://u:{SECRET}@h",
            "consistent_read='yes'; expected true or false or 1 or 0",
        ),
        ("dynamodb://tbl?read_first=sometimes", "read_first='sometimes'; expected auto or"),
        ("dynamodb://ab?region=x", "'ab' is not a DynamoDB table name (3 to 255 of a-z"),
        ("dynamodb://bad%20name?region=x", "is not a DynamoDB table name"),
        (
            f"dynamodb://tbl?endpoint_url=u:{SECRET}@h",
            "endpoint_url '***@h' is not an http:// or https:// URL with a host",
        ),
        ("dynamodb://tbl?endpoint_url=ftp://127.0.0.1:1", "is not an http:// or https:// URL"),
        ("dynamodb://tbl?endpoint_url=http://[::1", "Invalid IPv6 URL"),
        (f"mysql://:{SECRET}@h/0", "unsupported scheme 'mysql'"),
    ],
)
def test_a_malformed_url_is_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_online_store(url)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1/0",
        "redis://127.0.0.1:6380",
        "redis://[::1]:6379/15",
        f"rediss://user:{SECRET}@127.0.0.1:6379/0?server_name=cache",
    ],
)
def test_well_formed_redis_urls_open(url: str) -> None:
    assert open_online_store(url) is not None


@pytest.mark.parametrize(
    ("query", "consistent_read", "read_first"),
    [
        ("", False, None),
        ("&consistent_read=TRUE&read_first=auto", True, None),
        ("&consistent_read=0&read_first=true", False, True),
        ("&read_first=False", False, False),
    ],
)
def test_dynamodb_flags(query: str, consistent_read: bool, read_first: bool | None) -> None:
    config = DynamoConfig.from_url(f"dynamodb://tbl?region=us-east-1{query}")
    assert (config.consistent_read, config.read_first) == (consistent_read, read_first)
