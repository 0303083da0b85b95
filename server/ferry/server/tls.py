"""Transport security of the server: TLS, mTLS, and certificates rotated without a restart.

gRPC asks ``ServerTls`` for the certificate before each new connection's handshake
(``grpc.dynamic_ssl_server_credentials``), so ``reload`` (SIGHUP) takes effect for the next
connection while open ones keep theirs. A certificate set that does not load (unreadable, not
PEM, a key that does not match) is refused at start and, on reload, logged and ignored: the
server keeps the set it has.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from ferry.core.errors import FerryError

log = logging.getLogger("ferry.server")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS server.

    Attributes:
        cert_file: The server's certificate chain.
        key_file: Its private key.
        client_ca_file: CA certificates that sign client certificates; set, it turns on mTLS
            (every client must present a certificate that verifies).
    """

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class ServerTls:
    """The server's credentials over ``TlsFiles``, re-read by ``reload``."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()  # gRPC's handshake thread reads what reload writes
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._initial = _load(files)

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that fetch the latest certificate set for each handshake."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self._fetch,
            require_client_authentication=self.files.client_ca_file is not None,
        )

    def reload(self) -> bool:
        """Re-read the files; on any problem keep the current set (and say why)."""
        try:
            fresh = _load(self.files)
        except FerryError as err:
            log.error("TLS reload rejected, keeping the current certificates: %s", err)
            return False
        with self._lock:
            self._pending = fresh
        log.info("TLS certificates reloaded from %s", self.files.cert_file)
        return True

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # None keeps the configuration gRPC has; a new one is handed over once.
        with self._lock:
            fresh, self._pending = self._pending, None
        return fresh


def _load(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    """The certificate configuration, checked the way a handshake would use it.

    Raises:
        FerryError: a file is unreadable or not PEM, or the key does not match the certificate.
    """
    try:
        # The ssl module's checks: PEM syntax, and that the key belongs to the certificate.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(files.cert_file, files.key_file)
        if files.client_ca_file:
            ssl.create_default_context().load_verify_locations(files.client_ca_file)
        cert = Path(files.cert_file).read_bytes()
        key = Path(files.key_file).read_bytes()
        ca = Path(files.client_ca_file).read_bytes() if files.client_ca_file else None
    except (OSError, ssl.SSLError) as err:
        names = ", ".join(f for f in (files.cert_file, files.key_file, files.client_ca_file) if f)
        raise FerryError(f"cannot use the TLS files {names}: {err}") from err
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
