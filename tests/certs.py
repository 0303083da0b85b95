"""Certificate authorities for the TLS tests: a CA, and server or client certificates it
signs (valid, expired, for another name), written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_NOW = datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Pem:
    """A certificate and its key as files."""

    cert: str
    key: str


class Authority:
    """A self-signed CA in ``folder``; ``ca_file`` is its certificate."""

    def __init__(self, folder: Path, name: str = "Ferry test CA") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - datetime.timedelta(days=1))
            .not_valid_after(_NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.ca_file = str(folder / f"{name.replace(' ', '_')}.pem")
        Path(self.ca_file).write_bytes(self.cert_pem)

    def issue(
        self,
        name: str,
        *,
        client: bool = False,
        dns: tuple[str, ...] = ("localhost",),
        ips: tuple[str, ...] = ("127.0.0.1", "::1"),
        expired: bool = False,
    ) -> Pem:
        """A certificate for ``name`` (CN), with these SANs, for a server or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = (
            (_NOW - datetime.timedelta(days=10), _NOW - datetime.timedelta(days=1))
            if expired
            else (_NOW - datetime.timedelta(days=1), _NOW + datetime.timedelta(days=10))
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = self.folder / name.replace(" ", "_")
        Path(f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        Path(f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Pem(f"{stem}.crt", f"{stem}.key")


TLS_FAULTS = ("another CA", "another server name", "a wrong password")
"""Ways a managed Redis's TLS or credentials settings can be wrong, for ``tls_fault``."""


def tls_fault(fault: str, password: str, query: str, folder: Path) -> tuple[str, str]:
    """The password and ``rediss://`` query of a good setting, made wrong by ``fault``: a CA
    that did not sign the server's certificate, a server name it does not carry, or a wrong
    password."""
    if fault == "another CA":
        return password, f"ca={Authority(folder / 'other').ca_file}"
    if fault == "another server name":
        return password, f"{query}&server_name=elsewhere.test"
    if fault == "a wrong password":
        return "not-the-password", query
    raise ValueError(f"unknown TLS fault {fault!r}")
