"""How a client reaches a server: plaintext or TLS (mTLS with a client certificate), and
the bearer token sent with every call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from ferry.core.errors import InvalidValueError


@dataclass(frozen=True)
class ClientTls:
    """TLS to the server.

    Attributes:
        ca_file: PEM CA certificates the server's certificate must chain to; None trusts
            the system's roots.
        cert_file: The client's certificate chain, for a server that requires mTLS.
        key_file: Its private key (with ``cert_file``).
        server_name: The name the server's certificate must carry, if not the target's
            host (an address, or a name that differs inside a cluster).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials of these files.

        Raises:
            InvalidValueError: a file cannot be read, or only one of cert and key is given.
        """
        if (self.cert_file is None) != (self.key_file is None):
            raise InvalidValueError("a client certificate needs both cert_file and key_file")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.key_file),
            certificate_chain=_read(self.cert_file),
        )


# gRPC's own target forms (dns:///h:p, unix:/path, ...) are passed on as they are.
_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")


def check_target(target: str) -> None:
    """Refuse a ``host:port`` target gRPC would take and then fail on, or misread.

    Raises:
        InvalidValueError: an empty target (gRPC answered INTERNAL and logged C-core errors),
            or a port that is not 1-65535 (99999 connected to 34463: gRPC wraps it).
    """
    if not target.strip():
        raise InvalidValueError("the server target is empty: expected HOST:PORT")
    if target.startswith(_SCHEMES):
        return
    host, colon, port = target.rpartition(":")
    if not colon or (":" in host and not host.endswith("]")):
        return  # no port (gRPC's default) or a bare IPv6 address: gRPC's own rules apply
    if not (port.isdigit() and 0 < int(port) <= 65_535):
        raise InvalidValueError(
            f"server target {target!r}: {port!r} is not a port (1 to 65535)", target=target
        )


def open_channel(
    target: str, options: list[tuple[str, Any]], tls: ClientTls | None, aio: bool
) -> Any:
    """A blocking (or asyncio) channel to ``target``, over TLS when ``tls`` is given.

    Raises:
        InvalidValueError: ``check_target`` refused the target.
    """
    check_target(target)
    if tls is None:
        return (grpc.aio.insecure_channel if aio else grpc.insecure_channel)(target, options)
    if tls.server_name:
        options = [*options, ("grpc.ssl_target_name_override", tls.server_name)]
    secure = grpc.aio.secure_channel if aio else grpc.secure_channel
    return secure(target, tls.credentials(), options)


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    """The metadata every call carries: ``authorization: Bearer TOKEN`` if a token is set."""
    if token is None:
        return None
    if not token or any(c.isspace() for c in token):
        raise InvalidValueError("a token must be non-empty and hold no whitespace")
    return (("authorization", f"Bearer {token}"),)


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise InvalidValueError(f"cannot read {path}: {err.strerror}") from err
