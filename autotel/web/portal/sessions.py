"""Operator sessions of the portal page: random tokens with an expiry and a CSRF token.

Pure logic with an injectable wall clock (sessions outlive a portal restart, so
expiry is wall time, not monotonic). Only the SHA-256 of a token is kept, so the
saved book (`state/run/portal_sessions.json`, written by the portal) cannot be
replayed as cookies by whoever reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_SESSIONS = 64


@dataclass(frozen=True)
class Session:
    key: str
    expires: float
    csrf: str


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionBook:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self) -> tuple[str, Session]:
        """A new session; returns the token for the cookie (never stored) and the session."""
        self.prune()
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.expires)
            del self._sessions[oldest.key]
        token = secrets.token_urlsafe(32)
        session = Session(_key(token), self.clock() + self.ttl_s, secrets.token_urlsafe(24))
        self._sessions[session.key] = session
        return token, session

    def check(self, token: str | None) -> Session | None:
        """The live session of `token`, or None (unknown, expired or empty)."""
        if not token:
            return None
        session = self._sessions.get(_key(token))
        if session is None or session.expires <= self.clock():
            return None
        return session

    def revoke(self, token: str | None) -> bool:
        return bool(token) and self._sessions.pop(_key(token or ""), None) is not None

    def prune(self) -> bool:
        """Drop expired sessions; True if any was dropped."""
        now = self.clock()
        expired = [k for k, s in self._sessions.items() if s.expires <= now]
        for key in expired:
            del self._sessions[key]
        return bool(expired)

    def to_json(self) -> dict[str, Any]:
        return {k: {"expires": s.expires, "csrf": s.csrf} for k, s in self._sessions.items()}

    def load_json(self, data: Any) -> None:
        """Restore saved sessions, skipping anything malformed (damage only signs people out)."""
        self._sessions = {}
        if not isinstance(data, dict):
            return
        for key, value in data.items():
            try:
                session = Session(str(key), float(value["expires"]), str(value["csrf"]))
            except (TypeError, KeyError, ValueError):
                continue
            self._sessions[session.key] = session
        self.prune()


def csrf_matches(session: Session, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(session.csrf.encode(), (offered or "").encode())
