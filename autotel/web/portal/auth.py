"""Who may use the portal's API: the PIN (header or login), session cookies, CSRF.

Every API route accepts either `X-Config-Pin: <PIN>` or the session cookie that
`POST /api/login` sets. A cookie is sent by the browser on its own, so a
state-changing request that relies on it must also prove it comes from the page:
an `X-CSRF-Token` header equal to the session's token, or an `Origin` header naming
this very portal. A custom header cannot be sent cross-site without the portal's
consent (CORS), so PIN-header requests need no such proof.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from pathlib import Path
from urllib.parse import urlsplit

from autotel.fsutil import atomic_write_json
from autotel.web.portal.lockout import PinThrottle
from autotel.web.portal.sessions import Session, SessionBook, csrf_matches

log = logging.getLogger("autotel.portal")

COOKIE_NAME = "autotel_portal"
PIN_HEADER = "X-Config-Pin"
CSRF_HEADER = "X-CSRF-Token"


class AuthRefused(Exception):
    """An HTTP refusal: status, message and extra headers (e.g. Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class PortalAuth:
    def __init__(self, pin: str, sessions_file: Path, session_ttl_s: float,
                 throttle: PinThrottle | None = None) -> None:
        self._pin_set = bool(pin)
        self._pin_digest = _digest(pin)
        self.sessions_file = sessions_file
        self.throttle = throttle or PinThrottle()
        self.book = SessionBook(session_ttl_s)
        self._lock = threading.Lock()
        self._load_sessions()

    def check_pin(self, offered: str, ip: str) -> None:
        """Raises: AuthRefused 429 while `ip` (or everyone) is throttled, 401 for a wrong PIN."""
        with self._lock:
            wait_s = self.throttle.refusal(ip)
            if wait_s is not None:
                raise AuthRefused(429, "too many wrong PINs; try again later",
                                  {"Retry-After": str(max(1, int(wait_s + 0.999)))})
            if self._pin_set and hmac.compare_digest(self._pin_digest, _digest(offered)):
                self.throttle.success(ip)
                return
            self.throttle.failure(ip)
        log.warning("wrong portal PIN from %s", ip)
        if not self._pin_set:
            raise AuthRefused(401, "no portal PIN is configured (portal.pin in autotel.yaml)")
        raise AuthRefused(401, "wrong PIN")

    def login(self, offered: str, ip: str) -> tuple[str, Session]:
        self.check_pin(offered, ip)
        with self._lock:
            token, session = self.book.create()
            self._save_sessions()
        log.info("operator signed in from %s", ip)
        return token, session

    def logout(self, token: str | None) -> None:
        with self._lock:
            if self.book.revoke(token):
                self._save_sessions()

    def session(self, token: str | None) -> Session | None:
        with self._lock:
            return self.book.check(token)

    def authorize(self, *, pin: str | None, token: str | None, ip: str, changes_state: bool,
                  csrf: str | None, origin: str | None, host: str, scheme: str) -> Session | None:
        """Let a request through or raise AuthRefused; returns its session, if it used one.

        A PIN header wins over a cookie: a script that sends the PIN is judged by it.
        A state change with the cookie is refused when it names another site in its
        `Origin` (browsers send one with every POST, so a forged form from another
        page always does) or carries a wrong CSRF token. A client that sends no
        `Origin` is not a browser and cannot hold the operator's cookie by accident;
        the cookie is also SameSite=Strict.
        """
        if pin is not None:
            self.check_pin(pin, ip)
            return None
        session = self.session(token)
        if session is None:
            raise AuthRefused(401, f"sign in first: send the PIN in {PIN_HEADER} or log in")
        if changes_state and not csrf_matches(session, csrf) and (
            csrf is not None or cross_origin(origin, host, scheme)
        ):
            raise AuthRefused(403, "request refused: it does not come from the portal page "
                                   f"(another site's Origin, or a wrong {CSRF_HEADER})")
        return session

    def _load_sessions(self) -> None:
        try:
            self.book.load_json(json.loads(self.sessions_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable %s (%s); operators must sign in again",
                        self.sessions_file, e)

    def _save_sessions(self) -> None:
        self.book.prune()
        self.sessions_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.sessions_file, self.book.to_json())


def _digest(pin: str) -> bytes:
    """Compared as fixed-length digests, so not even the PIN's length shows in the timing."""
    return hashlib.sha256(pin.encode("utf-8")).digest()


def same_origin(origin: str | None, host: str, scheme: str) -> bool:
    """True if `Origin` names this server (scheme and host:port as the request reached it)."""
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme == scheme and bool(host) and parts.netloc.lower() == host.lower()


def cross_origin(origin: str | None, host: str, scheme: str) -> bool:
    """True for a request a browser sent from another site (an Origin that is not ours)."""
    return origin is not None and not same_origin(origin, host, scheme)
