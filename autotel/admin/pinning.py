"""Pinning agent certificates on first contact, like SSH's `known_hosts`.

An agent's certificate is self-signed: no CA vouches for it. So the first
connection to an address is trusted and its certificate stored in
`<storage>/known_agents.json`; every later connection trusts exactly that one
certificate. A different certificate stops the push until the admin, having
checked the new fingerprint on the site, names it with `--accept-cert`.

The decision (`decide`) is pure; the store and the probe are the I/O around it.
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import json
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autotel.crypto.tls import certified_client_id, fingerprint_pem
from autotel.errors import CertificateChangedError, ConfigError, UnreachableError
from autotel.fsutil import atomic_writer
from autotel.lockfile import ProcessLock
from autotel.timeutil import now_iso

KNOWN_AGENTS = "known_agents.json"
PIN_LOCK_WAIT_S = 10.0
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class PinAction(enum.Enum):
    TRUSTED = "trusted"  # the pinned certificate, as expected
    FIRST_CONTACT = "first_contact"  # nothing pinned for this address yet: pin it
    REPINNED = "repinned"  # changed, and the admin accepted exactly this one


@dataclass(frozen=True)
class PinnedCert:
    sha256: str
    pem: str


def address_of(host: str, port: int) -> str:
    """The key of an agent in the store: `host:port`, IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalize_fingerprint(text: str) -> str:
    """Accept `ab12…`, `AB:12:…` (openssl) and `SHA256:ab12…`; return lowercase hex.

    Raises:
        ConfigError: not a SHA-256 fingerprint.
    """
    value = text.strip().lower().removeprefix("sha256:").removeprefix("sha256=").replace(":", "")
    if not _HEX64.match(value):
        raise ConfigError(f"--accept-cert {text!r}: expected a SHA-256 fingerprint (64 hex digits)")
    return value


def decide(
    address: str, pinned: PinnedCert | None, presented: str, accept: str | None
) -> PinAction:
    """May the certificate with fingerprint `presented` be used for `address`?

    `accept` is the normalised `--accept-cert` value; it re-pins only the one
    certificate it names, so a stale command line cannot accept a later attacker.

    Raises:
        CertificateChangedError: the certificate differs from the pinned one (or from
            `accept`) and was not accepted.
    """
    if pinned is not None and hmac.compare_digest(pinned.sha256, presented):
        return PinAction.TRUSTED
    if accept is not None and not hmac.compare_digest(accept, presented):
        pinned_part = f"pinned SHA256 {pinned.sha256}, " if pinned else ""
        raise CertificateChangedError(
            f"agent {address} presents certificate SHA256 {presented}, not the one given with "
            f"--accept-cert ({accept}); {pinned_part}nothing was changed"
        )
    if pinned is None:
        return PinAction.FIRST_CONTACT
    if accept is not None:
        return PinAction.REPINNED
    raise CertificateChangedError(
        f"AGENT CERTIFICATE CHANGED for {address}: pinned SHA256 {pinned.sha256}, "
        f"now {presented}. "
        "Someone may be intercepting the connection, or the site made a new certificate "
        "(autotel cert). Check the fingerprint on the site (autotel status shows it), then re-run with "
        f"--accept-cert {presented}"
    )


def client_mismatch(address: str, pem: str, client_id: str) -> str | None:
    """What to tell the admin when the agent's certificate names another site than `client_id`.

    The push goes on: DESIGN.md makes `--client-id` only the name of the admin's folder
    for that site, and a site made without `--client-id` is named after its host. But a
    mistyped id files one site's readings under another's name, so the admin hears it
    (no reading is lost: a cursor from another database is answered with every reading).
    Only a certificate made by autotel names its site; any other passes silently.
    """
    named = certified_client_id(pem)
    if named is None or named == client_id:
        return None
    return (f"agent {address} is site {named!r} (the name in its certificate), not "
            f"--client-id {client_id!r}; its readings are filed under {client_id!r}. If that "
            "is a mistake, check --host, --port and --client-id")


class KnownAgents:
    """`<storage>/known_agents.json`: address -> pinned certificate (PEM and SHA-256)."""

    def __init__(self, path: Path, tmp_dir: Path) -> None:
        self.path = path
        self.tmp_dir = tmp_dir

    def get(self, address: str) -> PinnedCert | None:
        entry = self._load().get(address)
        if entry is None:
            return None
        return PinnedCert(sha256=entry["sha256"], pem=entry["pem"])

    def pin(self, address: str, pem: str) -> PinnedCert:
        """Store `pem` as the one certificate trusted for `address` (atomically).

        Raises:
            StateError: another push kept the store locked for PIN_LOCK_WAIT_S.
        """
        cert = PinnedCert(sha256=fingerprint_pem(pem), pem=pem)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # pushes of different clients may pin at the same moment: one read-modify-write at a time
        with _held(ProcessLock(self.path.with_suffix(".lock"), "known-agents store")):
            known = self._load()
            previous = known.get(address, {})
            known[address] = {
                "sha256": cert.sha256,
                "pem": pem,
                "first_seen": previous.get("first_seen", now_iso()),
                "pinned": now_iso(),
            }
            data = json.dumps(known, indent=2, sort_keys=True) + "\n"
            with atomic_writer(self.path, tmp_dir=self.tmp_dir) as f:
                f.write(data.encode("utf-8"))
        return cert

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            known = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self.path}: unreadable ({e}); restore it from a backup") from e
        if not isinstance(known, dict) or not all(_valid_entry(v) for v in known.values()):
            raise ConfigError(f"{self.path}: not a known-agents file; restore it from a backup")
        return known


@contextlib.contextmanager
def _held(lock: ProcessLock) -> Iterator[None]:
    lock.acquire_waiting(PIN_LOCK_WAIT_S)
    try:
        yield
    finally:
        lock.release()


def _valid_entry(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and isinstance(entry.get("pem"), str)
    )


def fetch_certificate(host: str, port: int, timeout_s: float) -> str:
    """The PEM certificate the agent presents now. NOT authenticated: only compared or pinned.

    Raises:
        UnreachableError: no TLS server answered at host:port within `timeout_s`.
    """
    try:
        return ssl.get_server_certificate((host, port), timeout=timeout_s)
    except OSError as e:
        raise UnreachableError(f"cannot reach agent {address_of(host, port)}: {_reason(e)}") from e


def pinned_context(pem: str) -> ssl.SSLContext:
    """A TLS context that trusts exactly this one certificate and no CA.

    The host name is not checked: the pin is exact, and a site's certificate often
    lacks the address (NAT, VPN) the admin reaches it by.
    """
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False
    return context


def _reason(error: OSError) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return error.strerror or str(error) or type(error).__name__
