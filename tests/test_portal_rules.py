"""The portal's pure rules: PIN lockout and throttle, sessions, origin, language."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotel.runner.events import EventTail, parse_lines
from autotel.web.portal.auth import cross_origin, same_origin
from autotel.web.portal.i18n import choose_language
from autotel.web.portal.lockout import PinThrottle
from autotel.web.portal.progress import latest_apply_events
from autotel.web.portal.sessions import SessionBook, csrf_matches


class FakeClock:
    """Time outside the product: advanced by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_five_wrong_pins_lock_the_ip_for_five_minutes() -> None:
    clock = FakeClock()
    throttle = PinThrottle(clock)
    for _ in range(4):
        assert throttle.refusal("10.0.0.1") is None
        throttle.failure("10.0.0.1")
    assert throttle.refusal("10.0.0.1") is None
    throttle.failure("10.0.0.1")
    assert throttle.refusal("10.0.0.1") == pytest.approx(300)
    assert throttle.refusal("10.0.0.2") is None
    clock.now += 299
    assert throttle.refusal("10.0.0.1") == pytest.approx(1)
    clock.now += 1
    assert throttle.refusal("10.0.0.1") is None
    throttle.failure("10.0.0.1")
    assert throttle.refusal("10.0.0.1") is None, "the count starts again after a lockout"


def test_a_right_pin_resets_the_count() -> None:
    throttle = PinThrottle(FakeClock())
    for _ in range(4):
        throttle.failure("ip")
    throttle.success("ip")
    for _ in range(4):
        throttle.failure("ip")
    assert throttle.refusal("ip") is None


def test_wrong_pins_from_many_ips_are_throttled_together() -> None:
    clock = FakeClock()
    throttle = PinThrottle(clock, global_limit=6, global_window_s=60)
    for i in range(6):
        assert throttle.refusal(f"10.0.0.{i}") is None
        throttle.failure(f"10.0.0.{i}")
        clock.now += 1
    assert throttle.refusal("10.9.9.9") == pytest.approx(54)
    clock.now += 54
    assert throttle.refusal("10.9.9.9") is None


@pytest.mark.parametrize("local", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_guessing_from_the_network_does_not_lock_out_the_sites_own_screen(local: str) -> None:
    """The portal's own machine is often the operator's panel: the throttle across all
    IPs spares it, though not the per-IP lockout (nor do its wrong PINs go uncounted)."""
    throttle = PinThrottle(FakeClock(), global_limit=6, global_window_s=60)
    for i in range(6):
        throttle.failure(f"10.0.0.{i}")
    assert throttle.refusal("10.9.9.9") is not None
    assert throttle.refusal(local) is None
    for _ in range(5):
        throttle.failure(local)
    assert throttle.refusal(local) == pytest.approx(300)


def test_sessions_expire_and_are_revoked() -> None:
    clock = FakeClock()
    book = SessionBook(ttl_s=60, clock=clock)
    token, session = book.create()
    assert book.check(token) == session
    assert book.check(token + "x") is None and book.check("") is None and book.check(None) is None
    clock.now += 59
    assert book.check(token) == session
    clock.now += 1
    assert book.check(token) is None
    token, _ = book.create()
    assert book.revoke(token) and book.check(token) is None and not book.revoke(token)


def test_saved_sessions_hold_no_token_and_survive_a_restart() -> None:
    clock = FakeClock()
    book = SessionBook(ttl_s=60, clock=clock)
    token, session = book.create()
    saved = book.to_json()
    assert token not in str(saved)
    again = SessionBook(ttl_s=60, clock=clock)
    again.load_json({**saved, "bad": {"expires": "soon"}, "worse": 3})
    assert again.check(token) == session and len(again.to_json()) == 1
    again.load_json(["not", "a", "mapping"])
    assert again.check(token) is None


def test_csrf_token_must_match_exactly() -> None:
    _, session = SessionBook(ttl_s=60, clock=FakeClock()).create()
    assert csrf_matches(session, session.csrf)
    assert not csrf_matches(session, session.csrf[:-1]) and not csrf_matches(session, None)


@pytest.mark.parametrize(("origin", "host", "scheme", "same"), [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", "http", True),
    ("http://plant-pc:8000", "PLANT-PC:8000", "http", True),
    ("https://127.0.0.1:8000", "127.0.0.1:8000", "http", False),
    ("http://127.0.0.1:8001", "127.0.0.1:8000", "http", False),
    ("http://evil.example", "127.0.0.1:8000", "http", False),
    ("null", "127.0.0.1:8000", "http", False),
    (None, "127.0.0.1:8000", "http", False),
    ("http://127.0.0.1:8000", "", "http", False),
])
def test_same_origin(origin: str | None, host: str, scheme: str, same: bool) -> None:
    assert same_origin(origin, host, scheme) is same
    assert cross_origin(origin, host, scheme) is (origin is not None and not same)


@pytest.mark.parametrize(("query", "cookie", "accept", "expected"), [
    (None, None, None, "uk"),
    ("en", None, "uk", "en"),
    ("xx", "en", None, "en"),
    (None, None, "en-US,en;q=0.9", "en"),
    (None, None, "de-DE,uk;q=0.5,en;q=0.9", "en"),
    (None, None, "ru,uk;q=0.8", "uk"),
    (None, None, "de, fr", "uk"),
    (None, None, "en;q=0, uk;q=bad", "uk"),
])
def test_language_choice(query: str | None, cookie: str | None, accept: str | None,
                         expected: str) -> None:
    assert choose_language(query, cookie, accept, "uk") == expected


def test_replay_holds_only_the_latest_apply_job() -> None:
    lines = b"\n".join([
        b'{"job": "a1", "kind": "apply", "step": "verify"}',
        b'{"job": "a1", "kind": "apply", "step": "done"}',
        b"not json",
        b'{"job": "a2", "kind": "apply", "step": "verify"}',
        b'{"job": "e1", "kind": "export", "step": "export"}',
        b'{"job": "a2", "kind": "apply", "step": "failed"}',
        b'{"job": "e2", "kind": "export", "step": "done"}',
    ])
    assert [e["step"] for e in latest_apply_events(parse_lines(lines))] == ["verify", "failed"]
    assert latest_apply_events(parse_lines(b'{"job": "e", "kind": "export"}\n[1]\n')) == []


def test_the_tail_reads_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.recent(100) == b"" and tail.read_new() == b""
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3}\n{"n"')
    assert tail.recent(14) == b'{"n": 3}\n', "a line cut by the window is dropped"
    assert tail.read_new() == b""
    with open(path, "ab") as f:
        f.write(b': 4}\n')
    assert tail.read_new() == b'{"n": 4}\n'
    assert EventTail(path).recent(1000).count(b"\n") == 4
    path.write_bytes(b'{"n": 5}\n')  # replaced by a shorter file: start over
    assert tail.read_new() == b'{"n": 5}\n'
