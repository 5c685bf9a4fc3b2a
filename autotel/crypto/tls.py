"""The agent's self-signed TLS certificate and its fingerprint.

The admin pins the certificate's SHA-256 on first contact, and the signed auth
challenge includes that fingerprint, so a man in the middle with another
certificate cannot reuse a signature.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from autotel.errors import ConfigError
from autotel.fsutil import atomic_write_bytes

VALID_DAYS = 3650
# The subject of an agent certificate autotel makes: this prefix, then the site's client_id.
AGENT_NAME_PREFIX = "autotel agent "


def fingerprint_der(der: bytes) -> str:
    """Lowercase hex SHA-256 of a certificate's DER bytes (= `openssl x509 -fingerprint -sha256`)."""
    return hashlib.sha256(der).hexdigest()


def fingerprint_pem(pem: str | bytes) -> str:
    text = pem.decode("ascii") if isinstance(pem, bytes) else pem
    return fingerprint_der(ssl.PEM_cert_to_DER_cert(text))


def agent_common_name(client_id: str) -> str:
    """The certificate subject of the agent of site `client_id`."""
    return AGENT_NAME_PREFIX + client_id


def certified_client_id(pem: str) -> str | None:
    """The client_id an agent certificate made by autotel names; None for any other certificate.

    Lets an admin notice a push to the wrong site before anything is exported or stored.
    The name proves nothing by itself: the certificate is trusted by its pin, not its name.
    """
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError:
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else ""
    return name.removeprefix(AGENT_NAME_PREFIX) if name.startswith(AGENT_NAME_PREFIX) else None


def machine_names() -> tuple[list[str], list[str]]:
    """DNS names and IP addresses this machine answers to, for the certificate's SAN.

    The host name's own addresses, plus the address of the interface that carries
    the default route (what an admin on the plant network most likely dials).
    """
    dns = {"localhost"}
    ips = {"127.0.0.1", "::1"}
    host = socket.gethostname()
    if host:
        dns.add(host)
        try:
            for info in socket.getaddrinfo(host, None):
                ips.add(str(info[4][0]).split("%")[0])
        except OSError:
            pass
    ips.update(_outbound_addresses())
    return sorted(dns), sorted(ips)


def _outbound_addresses() -> set[str]:
    """The local address of the default route per family; connecting UDP sends nothing."""
    found = set()
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                found.add(str(sock.getsockname()[0]).split("%")[0])
        except OSError:
            continue
    return found


_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_names(dns_names: Iterable[str], ips: Iterable[str]) -> None:
    """Raises: ConfigError for an entry that is not a DNS name (ASCII labels) or an IP address."""
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ConfigError(f"--ip {ip!r}: not an IP address") from None
    for name in dns_names:
        labels = name.removeprefix("*.").rstrip(".").split(".")
        if len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
            raise ConfigError(f"--dns {name!r}: not a DNS name (letters, digits, '-' and dots)")


def make_certificate(
    common_name: str, dns_names: Iterable[str], ips: Iterable[str]
) -> tuple[bytes, bytes]:
    """Return (cert PEM, key PEM) of a CA:FALSE leaf valid for the given names."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(set(dns_names))]
    san += [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(set(ips))]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=True, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_certificate(
    tls_dir: Path, common_name: str, extra_dns: Iterable[str] = (), extra_ips: Iterable[str] = ()
) -> str:
    """(Re)generate `cert.pem` and `key.pem` in `tls_dir`; return the new fingerprint.

    Raises:
        ConfigError: an entry of `extra_dns` or `extra_ips` is not a name / an address.
    """
    extra_dns, extra_ips = list(extra_dns), list(extra_ips)
    check_names(extra_dns, extra_ips)
    dns, ips = machine_names()
    cert_pem, key_pem = make_certificate(common_name, [*dns, *extra_dns], [*ips, *extra_ips])
    tls_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(tls_dir / "key.pem", key_pem, mode=0o600)
    atomic_write_bytes(tls_dir / "cert.pem", cert_pem, mode=0o644)
    return fingerprint_pem(cert_pem)
