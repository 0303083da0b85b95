"""Who may do what: bearer tokens and mTLS identities, and the permissions granted to each.

The access file (``ferry serve --access-file F``, YAML) names each caller and its grants;
tokens appear only as SHA-256 hashes, so the file can live in a config map:

    callers:
      - name: scoring-service
        token_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
        allow: ["read:service/fraud_*", "read:registry"]
      - name: feature-pipeline
        token_sha256: ...
        allow: ["push:view/user_stats"]
      - name: nightly-job
        tls_identity: "CN=nightly-job"       # or "SAN:name": a subject alternative name
        allow: ["read:view/*"]

Permissions are ``ACTION:KIND/NAME`` with shell wildcards in NAME: ``read:service/NAME``
(GetOnlineFeatures or a stream lookup by feature service; GetModelFeatures of a model bound
to it), ``read:view/NAME`` (features named by reference), ``push:view/NAME``
(PushFeatures), ``read:registry/MODEL`` (GetModelVersion, WatchModelVersion and
GetModelFeatures; ``read:registry`` is every model), and ``*`` for everything.

The process's interceptor authenticates each call (``Access.authenticate``) and sets the
caller for the call's task; the serving and registry flows ask ``require`` at the point
they know the resource. Without an access file nothing is checked.
"""

from __future__ import annotations

import contextvars
import fnmatch
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ferry.core.errors import FerryError
from ferry.server.errors import PermissionDeniedError, UnauthenticatedError

log = logging.getLogger("ferry.server")

_PERMISSION = re.compile(r"^(\*|(read|push):(service|view|registry)(/[^\s]+)?)$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its name (for messages and logs) and its grants."""

    name: str
    allow: tuple[str, ...]

    def may(self, action: str, kind: str, resource: str) -> bool:
        """Whether a grant covers ``ACTION:KIND/RESOURCE``."""
        wanted = f"{action}:{kind}/{resource}"
        for grant in self.allow:
            if grant == "*" or grant == f"{action}:{kind}":
                return True
            if fnmatch.fnmatchcase(wanted, grant):
                return True
        return False


_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "ferry_caller", default=None
)


def require(action: str, kind: str, resource: str) -> None:
    """Fail the current call unless its caller may ``action`` ``kind/resource``.

    A no-op on a server without an access file (no caller is set).

    Raises:
        PermissionDeniedError: naming the caller, the permission and the resource.
    """
    caller = _current.get()
    if caller is not None and not caller.may(action, kind, resource):
        raise PermissionDeniedError(
            f"{caller.name!r} is not granted {action}:{kind}/{resource}",
            caller=caller.name,
            permission=f"{action}:{kind}",
            resource=resource,
        )


def require_all(action: str, kind: str, resources: Iterable[str]) -> None:
    """``require`` for each of ``resources``; without a caller (no access file), nothing
    is done, ``resources`` not even iterated: pass a generator to keep the hot path free."""
    if _current.get() is None:
        return
    for resource in resources:
        require(action, kind, resource)


def set_caller(caller: Caller) -> None:
    """Make ``caller`` the current call's caller (the interceptor does, per call)."""
    _current.set(caller)


class Access:
    """The callers of an access file, re-read by ``reload`` (a bad file keeps the old)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._tokens, self._identities = _load(path)

    def reload(self) -> bool:
        """Re-read the file; on any problem keep the callers in force (and say why)."""
        try:
            self._tokens, self._identities = _load(self.path)
        except FerryError as err:
            log.error("access file reload rejected, keeping the current grants: %s", err)
            return False
        log.info(
            "access file %s reloaded: %d callers",
            self.path,
            len(self._tokens) + len(self._identities),
        )
        return True

    def authenticate(self, authorization: str | None, identities: Sequence[str]) -> Caller:
        """The caller of a call: by its bearer token, else by its client certificate.

        Args:
            authorization: The ``authorization`` metadata value, if any.
            identities: The verified client certificate's names (``CN=...``, ``DNS:...``,
                ``URI:...``), empty without mTLS.

        Raises:
            UnauthenticatedError: no token and no known identity, or an unknown token.
        """
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise UnauthenticatedError(
                    "the authorization metadata must be 'Bearer TOKEN'", reason="BAD_AUTHORIZATION"
                )
            digest = hashlib.sha256(token.encode()).hexdigest()
            found: Caller | None = None
            # Compare with every hash, without stopping at a match: the time taken says
            # nothing of which (or whether a) hash was close.
            for known, caller in self._tokens:
                if hmac.compare_digest(known, digest):
                    found = caller
            if found is None:
                raise UnauthenticatedError("unknown token", reason="UNKNOWN_TOKEN")
            return found
        for identity in identities:
            by_certificate = self._identities.get(identity)
            if by_certificate is not None:
                return by_certificate
        raise UnauthenticatedError(
            "this server needs a bearer token (authorization: Bearer TOKEN) or a client "
            "certificate it knows",
            reason="MISSING_CREDENTIALS",
        )


def _load(path: str) -> tuple[list[tuple[str, Caller]], dict[str, Caller]]:
    """The file's callers: (token hash, caller) pairs, and callers by TLS identity.

    Raises:
        FerryError: unreadable, not YAML, or an entry that is wrong (named by its index).
    """
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise FerryError(f"cannot read the access file {path}: {err}") from err
    entries = document.get("callers") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise FerryError(f"{path}: expected a 'callers' list")
    tokens: list[tuple[str, Caller]] = []
    identities: dict[str, Caller] = {}
    names: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{path}: callers[{index}]"
        if not isinstance(entry, dict):
            raise FerryError(f"{where}: expected a mapping")
        unknown = set(entry) - {"name", "token_sha256", "tls_identity", "allow"}
        if unknown:
            raise FerryError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        name, allow = entry.get("name"), entry.get("allow", [])
        if not isinstance(name, str) or not name or name in names:
            raise FerryError(f"{where}: 'name' must be a unique, non-empty string")
        names.add(name)
        if not isinstance(allow, list) or not all(
            isinstance(p, str) and _PERMISSION.match(p) for p in allow
        ):
            raise FerryError(
                f"{where} ({name}): 'allow' must list permissions like read:service/NAME, "
                "read:view/NAME, push:view/NAME, read:registry or *"
            )
        caller = Caller(name, tuple(allow))
        token, identity = entry.get("token_sha256"), entry.get("tls_identity")
        if (token is None) == (identity is None):
            raise FerryError(f"{where} ({name}): give exactly one of token_sha256 and tls_identity")
        if token is not None:
            if not isinstance(token, str) or not _HASH.match(token.lower()):
                raise FerryError(
                    f"{where} ({name}): token_sha256 must be 64 hex digits (sha256sum of the "
                    "token); the token itself never goes in this file"
                )
            tokens.append((token.lower(), caller))
        else:
            if not isinstance(identity, str) or not identity:
                raise FerryError(f"{where} ({name}): tls_identity must be a non-empty string")
            identities[identity] = caller
    return tokens, identities
