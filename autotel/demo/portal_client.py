"""The operator portal's API, used the way the operator page uses it.

Sign in with the PIN (`POST /api/login`: a session cookie, and a CSRF token in the
`X-CSRF-Token` header), read
`GET /api/update/status`, confirm with `POST /api/update/apply` carrying the SHA-256
of the package the operator saw.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

from autotel.errors import TransportError

CSRF_HEADER = "X-CSRF-Token"


class PortalClient:
    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.http.close()

    def login(self, pin: str) -> None:
        answer = self._send("POST", "/api/login", json={"pin": pin})
        self.http.headers[CSRF_HEADER] = answer.headers.get(CSRF_HEADER, "")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/api/update/status")

    def apply(self, sha256: str) -> str:
        """Confirm the pending package; returns the apply job's id."""
        return str(self._call("POST", "/api/update/apply", json={"sha256": sha256})["job"])

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Raises: TransportError for a failed request or an answer other than 2xx JSON."""
        response = self._send(method, path, **kwargs)
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            raise TransportError(
                f"portal {method} {path}: not JSON: {response.text[:200]}") from None
        return data

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Raises: TransportError for a failed request or an answer other than 2xx."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise TransportError(f"portal {method} {path}: {e}") from None
        if not response.is_success:
            raise TransportError(f"portal {method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response
