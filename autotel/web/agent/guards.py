"""The agent's in-memory guards: nonces, session tokens and per-IP rate limits.

Pure logic with an injectable clock and no I/O, so every rule (single use, expiry,
bounds, the per-minute window) is tested with plain values. All stores are bounded:
a flood of challenges or logins evicts the oldest entries instead of growing memory.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

Monotonic = Callable[[], float]

NONCE_TTL_S = 60.0
MAX_NONCES = 4096
MAX_TOKENS = 1024
MAX_TRACKED_IPS = 10_000
WINDOW_S = 60.0


class NonceStore:
    """Nonces the agent issued: each valid once, for `ttl_s` seconds."""

    def __init__(
        self,
        clock: Monotonic = time.monotonic,
        ttl_s: float = NONCE_TTL_S,
        capacity: int = MAX_NONCES,
    ) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._issued: OrderedDict[str, float] = OrderedDict()

    def issue(self) -> str:
        self._evict()
        nonce = secrets.token_urlsafe(32)
        self._issued[nonce] = self._clock()
        return nonce

    def consume(self, nonce: str) -> bool:
        """True once for a nonce issued less than `ttl_s` ago; it is gone afterwards either way."""
        issued = self._issued.pop(nonce, None)
        return issued is not None and self._clock() - issued <= self._ttl_s

    def __len__(self) -> int:
        return len(self._issued)

    def _evict(self) -> None:
        now = self._clock()
        while self._issued:
            oldest, issued = next(iter(self._issued.items()))
            if now - issued <= self._ttl_s and len(self._issued) < self._capacity:
                return
            self._issued.pop(oldest)


class TokenStore:
    """Session tokens: random, valid `ttl_s` seconds, looked up by hash in constant time.

    Only SHA-256 digests are kept, so the dictionary lookup's timing depends on the
    digest, not on how much of a guessed token matches; the final check is
    `hmac.compare_digest`.
    """

    def __init__(
        self, ttl_s: float, clock: Monotonic = time.monotonic, capacity: int = MAX_TOKENS
    ) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._expiry: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()

    def issue(self) -> str:
        self._evict()
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        self._expiry[digest] = (digest, self._clock() + self._ttl_s)
        return token

    def valid(self, token: str) -> bool:
        digest = _digest(token)
        entry = self._expiry.get(digest)
        if entry is None:
            return False
        stored, expires = entry
        if self._clock() >= expires:
            self._expiry.pop(digest, None)
            return False
        return hmac.compare_digest(stored, digest)

    def __len__(self) -> int:
        return len(self._expiry)

    def _evict(self) -> None:
        now = self._clock()
        for digest in [d for d, (_, expires) in self._expiry.items() if now >= expires]:
            del self._expiry[digest]
        while len(self._expiry) >= self._capacity:
            self._expiry.popitem(last=False)


class RateLimiter:
    """At most `limit` hits per `window_s` seconds per key (an IP), sliding window."""

    def __init__(
        self,
        limit: int,
        clock: Monotonic = time.monotonic,
        window_s: float = WINDOW_S,
        max_keys: int = MAX_TRACKED_IPS,
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._window_s = window_s
        self._max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, key: str) -> int | None:
        """Count one attempt; None if allowed, else the seconds to wait (for `Retry-After`).

        A refused attempt is not recorded, so a client that keeps trying too early
        does not push its own window further out.
        """
        now = self._clock()
        hits = self._hits.pop(key, None) or deque()
        while hits and now - hits[0] >= self._window_s:
            hits.popleft()
        self._hits[key] = hits
        while len(self._hits) > self._max_keys:
            self._hits.popitem(last=False)
        if len(hits) >= self._limit:
            return max(1, math.ceil(self._window_s - (now - hits[0])))
        hits.append(now)
        return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
