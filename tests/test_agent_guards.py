"""The agent's pure auth logic: nonces, tokens, rate limits, the signed challenge (fake clocks)."""

from __future__ import annotations

import base64
import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from autotel.crypto.challenge import auth_message
from autotel.crypto.signing import load_private_key, load_public_key, sign
from autotel.web.agent.auth import AuthDenied, Authenticator
from autotel.web.agent.guards import NonceStore, RateLimiter, TokenStore

FINGERPRINT = "ab" * 32


class FakeClock:
    """Stands in for time.monotonic() and the wall clock, moved by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.now = datetime(2026, 2, 22, 10, 0, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.now += timedelta(seconds=seconds)


def test_nonce_is_single_use_and_expires_after_60_s() -> None:
    clock = FakeClock()
    store = NonceStore(clock.monotonic)
    first, second = store.issue(), store.issue()
    assert first != second
    assert store.consume(first) is True
    assert store.consume(first) is False
    clock.advance(60.5)
    assert store.consume(second) is False
    assert store.consume("never-issued") is False


def test_nonce_store_stays_bounded() -> None:
    clock = FakeClock()
    store = NonceStore(clock.monotonic, capacity=10)
    issued = [store.issue() for _ in range(100)]
    assert len(store) == 10
    assert store.consume(issued[0]) is False
    assert store.consume(issued[-1]) is True


def test_token_valid_until_ttl_and_bounded() -> None:
    clock = FakeClock()
    store = TokenStore(300, clock.monotonic, capacity=5)
    token = store.issue()
    assert store.valid(token)
    assert not store.valid(token[:-1] + ("A" if token[-1] != "A" else "B"))
    clock.advance(299)
    assert store.valid(token)
    clock.advance(2)
    assert not store.valid(token)
    tokens = [store.issue() for _ in range(20)]
    assert len(store) <= 5
    assert store.valid(tokens[-1]) and not store.valid(tokens[0])


def test_rate_limiter_window_and_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, clock.monotonic)
    assert [limiter.hit("10.0.0.1") for _ in range(3)] == [None, None, None]
    clock.advance(10)
    assert limiter.hit("10.0.0.1") == 50
    assert limiter.hit("10.0.0.2") is None  # another IP has its own budget
    clock.advance(50)
    assert limiter.hit("10.0.0.1") is None


def test_rate_limiter_tracks_bounded_number_of_ips() -> None:
    limiter = RateLimiter(1, FakeClock().monotonic, max_keys=100)
    for i in range(1000):
        limiter.hit(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._hits) == 100


AuthAndClock = tuple[Authenticator, FakeClock]


@pytest.fixture
def authenticator(admin_keys: tuple[Path, Path]) -> AuthAndClock:
    clock = FakeClock()
    auth = Authenticator(
        keys=[load_public_key(admin_keys[1])],
        fingerprint=FINGERPRINT,
        challenge_per_minute=10,
        auth_per_minute=3,
        session_ttl_s=300,
        monotonic=clock.monotonic,
        wall=clock.wall,
    )
    return auth, clock


@functools.lru_cache(maxsize=2)
def _key(path: Path) -> rsa.RSAPrivateKey:
    return load_private_key(path)


def _signed(
    private: Path, timestamp: str, nonce: str, fingerprint: str = FINGERPRINT
) -> dict[str, str]:
    signature = sign(_key(private), auth_message(timestamp, nonce, fingerprint))
    return {
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": base64.b64encode(signature).decode(),
    }


def test_message_is_exact_and_has_no_trailing_newline() -> None:
    assert (
        auth_message("2026-02-22T10:00:00Z", "n1", "ff")
        == b"autotel-auth-v1\n2026-02-22T10:00:00Z\nn1\nff"
    )


def test_signed_challenge_gives_a_token_once(
        authenticator: AuthAndClock, admin_keys: tuple[Path, Path]) -> None:
    auth, _ = authenticator
    challenge = auth.challenge("10.0.0.1")
    assert challenge["agent_time"] == "2026-02-22T10:00:00Z"
    body = _signed(admin_keys[0], challenge["agent_time"], challenge["nonce"])
    token = auth.login(body)["session_token"]
    assert auth.token_valid(f"Bearer {token}")
    assert not auth.token_valid(token) and not auth.token_valid("Basic " + token)
    with pytest.raises(AuthDenied) as replay:
        auth.login(body)
    assert replay.value.status == 401


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("stale", 401),
        ("future", 401),
        ("other_fingerprint", 401),
        ("unknown_nonce", 401),
        ("bad_base64", 401),
        ("not_iso", 401),
        ("not_object", 400),
        ("missing_field", 400),
    ],
)
def test_refused_logins(authenticator: AuthAndClock, admin_keys: tuple[Path, Path],
                        case: str, status: int) -> None:
    auth, _ = authenticator
    nonce = auth.challenge("10.0.0.1")["nonce"]
    stamp = "2026-02-22T10:00:00Z"
    body: object = _signed(admin_keys[0], stamp, nonce)
    if case == "stale":
        body = _signed(admin_keys[0], "2026-02-22T09:58:59Z", nonce)
    elif case == "future":
        body = _signed(admin_keys[0], "2026-02-22T10:01:01Z", nonce)
    elif case == "other_fingerprint":
        body = _signed(admin_keys[0], stamp, nonce, fingerprint="cd" * 32)
    elif case == "unknown_nonce":
        body = _signed(admin_keys[0], stamp, "made-up")
    elif case == "bad_base64":
        body = {**_signed(admin_keys[0], stamp, nonce), "signature": "!!not base64!!"}
    elif case == "not_iso":
        body = _signed(admin_keys[0], "yesterday", nonce)
    elif case == "not_object":
        body = ["timestamp", stamp]
    elif case == "missing_field":
        body = {"timestamp": stamp, "nonce": nonce}
    with pytest.raises(AuthDenied) as denied:
        auth.login(body)
    assert denied.value.status == status


def test_timestamp_within_60_s_is_accepted(
        authenticator: AuthAndClock, admin_keys: tuple[Path, Path]) -> None:
    auth, _ = authenticator
    nonce = auth.challenge("10.0.0.1")["nonce"]
    assert auth.login(_signed(admin_keys[0], "2026-02-22T09:59:01Z", nonce))["session_token"]


def test_nonce_older_than_60_s_is_refused(
        authenticator: AuthAndClock, admin_keys: tuple[Path, Path]) -> None:
    auth, clock = authenticator
    nonce = auth.challenge("10.0.0.1")["nonce"]
    clock.advance(61)
    with pytest.raises(AuthDenied):
        auth.login(_signed(admin_keys[0], "2026-02-22T10:01:01Z", nonce))


def test_fourth_login_attempt_in_a_minute_is_429(authenticator: AuthAndClock) -> None:
    auth, clock = authenticator
    for _ in range(3):
        auth.admit_login("10.0.0.1")
    with pytest.raises(AuthDenied) as denied:
        auth.admit_login("10.0.0.1")
    assert denied.value.status == 429 and 1 <= (denied.value.retry_after_s or 0) <= 60
    clock.advance(60)
    auth.admit_login("10.0.0.1")


def test_challenge_limit_per_ip(authenticator: AuthAndClock) -> None:
    auth, _ = authenticator
    for _ in range(10):
        auth.challenge("10.0.0.1")
    with pytest.raises(AuthDenied) as denied:
        auth.challenge("10.0.0.1")
    assert denied.value.status == 429
    auth.challenge("10.0.0.2")
