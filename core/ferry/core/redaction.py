"""Credentials out of what Ferry prints: URLs are logged and quoted in errors, passwords not.

``redact_url`` keeps everything an operator needs to recognise the endpoint (scheme, user,
host, port, path) and replaces the password, any query parameter that names a secret, and
the password of a URL given as a query parameter, with ``***``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
_SECRET_PARAMETERS = ("password", "passwd", "secret", "token", "key", "credential")


def redact_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``;
    everything else exactly as written."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not parseable as a URL: say nothing of it rather than leak it
        return REDACTED
    if "//" not in url and "@" in url:
        # No //host to parse (u:PW@h, as an endpoint typed without its scheme): what comes
        # before the last @ may be credentials. (sqlite:///a@b.db keeps its path.)
        return f"{REDACTED}@{url.rpartition('@')[2]}"
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:{REDACTED}@{netloc.rpartition('@')[2]}"
    fields = parts.query.split("&") if parts.query else []
    query = "&".join(_redact_field(field) for field in fields)
    if netloc == parts.netloc and query == parts.query:
        return url  # urlunsplit would rewrite sqlite:///x as sqlite:/x
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_field(field: str) -> str:
    name, sep, value = field.partition("=")
    if sep and any(secret in name.lower() for secret in _SECRET_PARAMETERS):
        return f"{name}={REDACTED}"
    if "://" in value or "@" in value:  # a URL in a URL (dynamodb://T?endpoint_url=http://U:P@H)
        return f"{name}={redact_url(value)}"
    return field
