"""Issuing a licence (admin side) and checking a site's `license.dat` (site side).

A licence is valid through its expiry date (UTC), for exactly one `client_id` (and
one product, if issued with one), and only when one of the site's trusted admin keys signed it.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from autotel.config import Config
from autotel.crypto.signing import load_private_key, load_public_keys, sign, verify
from autotel.errors import ConfigError, LicenseError
from autotel.fsutil import atomic_write_bytes
from autotel.licensing.document import License, check_terms, decode, encode, signed_bytes
from autotel.timeutil import now_iso, utcnow

LICENSE_FILE = "license.dat"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def license_path(config: Config) -> Path:
    return config.install_path / LICENSE_FILE


def today_utc() -> date:
    return utcnow().date()


def issue_license(key_path: Path, client_id: str, expires: date, product: str | None,
                  out: Path) -> License:
    """Sign a licence for `client_id` with the admin's private key and write it to `out`.

    Raises:
        ConfigError: a bad client id, an expiry in the past, an unreadable key.
    """
    if not _CLIENT_ID.match(client_id):
        raise ConfigError(f"--client-id {client_id!r}: use letters, digits, '.', '_' and '-' "
                          "(as in autotel.yaml)")
    if expires < today_utc():
        raise ConfigError(f"--expires {expires.isoformat()}: that date has passed")
    key = load_private_key(key_path)
    lic = License(client_id=client_id, product=product, expires=expires, issued=now_iso())
    signature = sign(key, signed_bytes(lic.payload()))
    atomic_write_bytes(out, encode(lic, signature))
    return lic


def check_site_license(config: Config, today: date | None = None) -> License:
    """The site's licence if it is present, signed by a trusted key, for this site and product.

    Raises:
        LicenseError: missing, unreadable, forged, for another site or product, or expired.
    """
    path = license_path(config)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LicenseError(f"{path}: no licence file; ask the admin for one "
                           f"(`autotel license issue --client-id {config.client_id} ...`)") from None
    except OSError as e:
        raise LicenseError(f"{path}: cannot read the licence: {e.strerror}") from None
    lic, payload, signature = decode(raw, str(path))
    if not config.trusted_key_paths:
        raise LicenseError(f"{path}: no trusted admin key in {config.config_path} (trusted_keys) "
                           "to check it with")
    try:
        keys = load_public_keys(config.trusted_key_paths)
    except ConfigError as e:
        raise LicenseError(f"cannot check the licence: {e}") from None
    if not verify(keys, signed_bytes(payload), signature):
        raise LicenseError(f"{path}: licence signature does not match any trusted admin key "
                           "(altered, or signed by another key); ask the admin for a new one")
    check_terms(lic, client_id=config.client_id, product=config.product,
                today=today or today_utc(), source=str(path))
    return lic
