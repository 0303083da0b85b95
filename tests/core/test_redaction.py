"""Credentials never reach logs or errors through a URL."""

from __future__ import annotations

import pytest

from ferry.core.redaction import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
        ("redis://ferry:s3cret@host:6380/2", "redis://ferry:***@host:6380/2"),
        ("rediss://ferry:p%40ss@host/0?ssl_ca=/ca.pem", "rediss://ferry:***@host/0?ssl_ca=/ca.pem"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("https://u:pw@mlflow/?token=abc&x=1", "https://u:***@mlflow/?token=***&x=1"),
        ("sqlite:///online.db", "sqlite:///online.db"),
        (
            "dynamodb://t?region=r&aws_secret_access_key=k",
            "dynamodb://t?region=r&aws_secret_access_key=***",
        ),
        (
            "dynamodb://t?region=r&endpoint_url=http://u:pw@127.0.0.1:5000",
            "dynamodb://t?region=r&endpoint_url=http://u:***@127.0.0.1:5000",
        ),
        ("s3://AKIA:wJalr@bucket/prefix", "s3://AKIA:***@bucket/prefix"),
        # Typed without a scheme, there is no netloc to parse: all before the @ goes.
        ("u:pw@127.0.0.1:5000", "***@127.0.0.1:5000"),
        ("dynamodb://t?endpoint_url=u:pw@h:1", "dynamodb://t?endpoint_url=***@h:1"),
        ("sqlite:///data/a@b.db", "sqlite:///data/a@b.db"),
    ],
)
def test_passwords_and_secret_parameters_are_replaced(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_unparseable_url_is_not_shown() -> None:
    assert redact_url("redis://[::1") == "***"
