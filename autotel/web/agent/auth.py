"""The signed-challenge login of DESIGN.md, as pure decisions over plain values.

The admin asks for a nonce, then signs `autotel-auth-v1\\n<timestamp>\\n<nonce>\\n
<certificate fingerprint>` (no trailing newline). Binding the nonce makes a captured
signature single use, the timestamp bounds its age, and the fingerprint of the TLS
certificate the admin saw makes it useless through a man in the middle. No sockets
here: the HTTP layer passes the peer IP and the parsed body and maps the outcome;
a lock makes one instance safe to share between the server's threads.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from autotel.crypto.challenge import auth_message
from autotel.crypto.signing import verify
from autotel.timeutil import iso, parse_iso, utcnow
from autotel.web.agent.guards import Monotonic, NonceStore, RateLimiter, TokenStore

MAX_SKEW_S = 60.0
MAX_FIELD_CHARS = 2048


class AuthDenied(Exception):
    """A refused request: the HTTP status, a message for the JSON body, and Retry-After."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class AuthRequest:
    timestamp: str
    nonce: str
    signature: bytes

    @classmethod
    def from_json(cls, body: Any) -> AuthRequest:
        """Raises: AuthDenied(400) unless `body` is an object with the three string fields."""
        if not isinstance(body, dict):
            raise AuthDenied(400, 'expected a JSON object {"timestamp", "nonce", "signature"}')
        values = {}
        for name in ("timestamp", "nonce", "signature"):
            value = body.get(name)
            if not isinstance(value, str) or not value or len(value) > MAX_FIELD_CHARS:
                raise AuthDenied(400, f"field {name!r}: expected a non-empty string")
            values[name] = value
        try:
            signature = base64.b64decode(values["signature"], validate=True)
        except (binascii.Error, ValueError):
            raise AuthDenied(401, "invalid signature: not base64") from None
        return cls(values["timestamp"], values["nonce"], signature)


@dataclass
class Authenticator:
    """Issues challenges and session tokens; one per agent process."""

    keys: Sequence[rsa.RSAPublicKey]
    fingerprint: str
    challenge_per_minute: int
    auth_per_minute: int
    session_ttl_s: float
    monotonic: Monotonic = time.monotonic
    wall: Callable[[], datetime] = utcnow
    nonces: NonceStore = field(init=False)
    tokens: TokenStore = field(init=False)
    challenge_limit: RateLimiter = field(init=False)
    auth_limit: RateLimiter = field(init=False)
    lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.nonces = NonceStore(self.monotonic)
        self.tokens = TokenStore(self.session_ttl_s, self.monotonic)
        self.challenge_limit = RateLimiter(self.challenge_per_minute, self.monotonic)
        self.auth_limit = RateLimiter(self.auth_per_minute, self.monotonic)

    def challenge(self, peer_ip: str) -> dict[str, str]:
        """Raises: AuthDenied(429) when `peer_ip` asked too often this minute."""
        with self.lock:
            _check_rate(self.challenge_limit, peer_ip)
            return {"nonce": self.nonces.issue(), "agent_time": iso(self.wall())}

    def admit_login(self, peer_ip: str) -> None:
        """Count one `POST /auth` (successful or not) before its body is even read.

        Raises: AuthDenied(429) over `auth_per_minute`, with the seconds to wait.
        """
        with self.lock:
            _check_rate(self.auth_limit, peer_ip)

    def login(self, body: Any) -> dict[str, str]:
        """Check an admitted `POST /auth` body; the nonce it names is used up either way.

        Raises:
            AuthDenied: 400 for a malformed body, 401 for a bad signature, an unknown,
                used or expired nonce, or a stale timestamp.
        """
        request = AuthRequest.from_json(body)
        with self.lock:
            fresh = self.nonces.consume(request.nonce)
        if not fresh:
            raise AuthDenied(401, "invalid signature: unknown, used or expired nonce")
        self._check_timestamp(request.timestamp)
        message = auth_message(request.timestamp, request.nonce, self.fingerprint)
        if not verify(self.keys, message, request.signature):
            raise AuthDenied(401, "invalid signature")
        with self.lock:
            return {"session_token": self.tokens.issue()}

    def token_valid(self, authorization: str | None) -> bool:
        """True for `Bearer <token>` naming a live session token."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        with self.lock:
            return self.tokens.valid(token.strip())

    def _check_timestamp(self, timestamp: str) -> None:
        try:
            sent = parse_iso(timestamp)
        except ValueError:
            raise AuthDenied(401, "invalid signature: timestamp is not ISO 8601") from None
        skew = abs((self.wall() - sent).total_seconds())
        if skew > MAX_SKEW_S:
            raise AuthDenied(
                401,
                f"invalid signature: timestamp {skew:.0f} s away from the agent's clock "
                f"(at most {MAX_SKEW_S:.0f} s; take it from agent_time)",
            )


def _check_rate(limiter: RateLimiter, peer_ip: str) -> None:
    wait_s = limiter.hit(peer_ip)
    if wait_s is not None:
        raise AuthDenied(429, f"too many requests from {peer_ip}; retry in {wait_s} s", wait_s)
