"""The licence document and the decisions about it; no disk, no keys loaded here.

`license.dat` is JSON: `{"license": {payload}, "signature": "<base64 RSA-PSS>"}`.
The signature covers `autotel-license-v1\\n` followed by the payload in canonical
JSON (sorted keys, no spaces, ASCII), so the file may be re-indented without breaking
it, and a licence signature can never be replayed as an auth or manifest signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from autotel.errors import LicenseError

FORMAT = 1
DOMAIN = b"autotel-license-v1\n"


@dataclass(frozen=True)
class License:
    """`product` None: valid for whatever product the site runs (the contract's
    `license issue` has no --product; the licence binds the client_id)."""

    client_id: str
    product: str | None
    expires: date
    issued: str

    def payload(self) -> dict[str, Any]:
        product = {} if self.product is None else {"product": self.product}
        return {"format": FORMAT, "client_id": self.client_id, **product,
                "expires": self.expires.isoformat(), "issued": self.issued}

    def days_left(self, today: date) -> int:
        return (self.expires - today).days


def signed_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes a licence signature covers."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return DOMAIN + canonical.encode("ascii")


def encode(lic: License, signature: bytes) -> bytes:
    document = {"license": lic.payload(), "signature": base64.b64encode(signature).decode("ascii")}
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def parse_date(text: str, what: str) -> date:
    """Raises: LicenseError when `text` is not `YYYY-MM-DD`."""
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise LicenseError(f"{what} {text!r}: expected a date YYYY-MM-DD") from None


def decode(raw: bytes, source: str) -> tuple[License, dict[str, Any], bytes]:
    """Parse `license.dat` into (licence, payload as signed, signature); checks only its shape.

    Raises:
        LicenseError: not JSON, fields missing or of the wrong type, a bad date or base64.
    """
    try:
        document = json.loads(raw.decode("utf-8"))
        payload, signature_b64 = document["license"], document["signature"]
        if not isinstance(payload, dict) or not isinstance(signature_b64, str):
            raise TypeError("license must be an object and signature a string")
        fields = {k: payload[k] for k in ("client_id", "expires", "issued")}
        product = payload.get("product")
        strings = all(isinstance(v, str) for v in fields.values())
        if not strings or not isinstance(product, str | None):
            raise TypeError("client_id, product, expires and issued must be strings")
        signature = base64.b64decode(signature_b64, validate=True)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, binascii.Error) as e:
        raise LicenseError(f"{source}: not a valid autotel licence file ({e}); "
                           "ask the admin for a new one") from None
    if payload.get("format") != FORMAT:
        raise LicenseError(f"{source}: licence format {payload.get('format')!r} is not supported "
                           f"(expected {FORMAT})")
    expires = parse_date(fields["expires"], f"{source}: expiry")
    return License(fields["client_id"], product, expires, fields["issued"]), payload, signature


def check_terms(lic: License, *, client_id: str, product: str, today: date, source: str) -> None:
    """The checks after the signature: this site, this product (if it names one), not expired.

    Raises:
        LicenseError: naming what the licence says and what this site is.
    """
    if lic.client_id != client_id:
        raise LicenseError(f"{source}: licence is for site {lic.client_id!r}, this site is {client_id!r}; "
                           "ask the admin for this site's licence")
    if lic.product is not None and lic.product != product:
        raise LicenseError(f"{source}: licence is for product {lic.product!r}, this site runs {product!r}")
    if lic.expires < today:
        raise LicenseError(f"{source}: licence for {client_id!r} expired on {lic.expires.isoformat()}; "
                           "ask the admin to renew it")
