"""The agent against the security audit's unauthenticated attacks, over real TLS:
a header that never ends, and silent, half-handshaken or trickling connections.

Each test starts its own agent (no runner: nothing here reaches a job); the attacker
speaks from ATTACKER, the admin from ADMIN.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from autotel.config import Config
from autotel.web.agent import build_agent
from autotel.web.connections import ClientSlots
from autotel.web.server import ServerHandle
from tests.agent_support import with_agent
from tests.limits_support import (
    PARTIAL_CLIENT_HELLO,
    Flood,
    Wrap,
    answer_time,
    connect,
    huge_header,
    plain,
    tls_wrapper,
)

ATTACKER = "127.0.0.2"
ADMIN = "127.0.0.3"


@pytest.fixture
def agent(bare_site: Config) -> Iterator[ServerHandle]:
    local = with_agent(bare_site, host="127.0.0.1")
    handle = build_agent(local, port=0).start_background()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def pinned(bare_site: Config) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=(bare_site.state.tls / "cert.pem").read_text())


def challenge_from(agent: ServerHandle, pinned: ssl.SSLContext, ip: str) -> int:
    transport = httpx.HTTPTransport(verify=pinned, local_address=ip)
    with httpx.Client(base_url=f"https://127.0.0.1:{agent.port}", transport=transport,
                      timeout=10) as http:
        return http.get("/auth/challenge").status_code


def test_a_huge_header_is_refused_before_it_is_read(
        agent: ServerHandle, pinned: ssl.SSLContext) -> None:
    answer, sent_all = huge_header(agent.port, ATTACKER, 4 << 20, tls_wrapper(pinned))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
    assert b"Content-Length: 67\r\n" in answer  # a short text, then the connection closes
    assert not sent_all, "the agent read the whole 4 MiB header before answering"
    assert challenge_from(agent, pinned, ATTACKER) == 200


@pytest.mark.parametrize(("kind", "tls"), [
    ("silent", False),  # TCP only: cheroot did the handshake in its accept thread
    ("partial_hello", False),
    ("silent", True),  # handshake done, then no request
    ("trickle", True),
])
def test_idle_or_slow_connections_do_not_lock_the_admin_out(
        agent: ServerHandle, pinned: ssl.SSLContext, kind: str, tls: bool) -> None:
    wrap: Wrap = tls_wrapper(pinned) if tls else plain
    with Flood(agent.port, ATTACKER, 24, kind, wrap):  # more than the agent's 16 threads
        status, seconds = answer_time(lambda: challenge_from(agent, pinned, ADMIN))
    assert status == 200 and seconds < 2


def test_a_trickled_handshake_is_closed_at_the_header_deadline(agent: ServerHandle) -> None:
    """The deadline is for the whole handshake, not for each read of it."""
    agent.server.header_timeout_s = 0.5  # the agent's 30 s, shortened to keep the test fast
    with connect(agent.port, ATTACKER) as sock:
        started = time.monotonic()
        sock.sendall(PARTIAL_CLIENT_HELLO)  # announces 512 bytes of ClientHello
        with pytest.raises(OSError):  # the agent closed the connection
            for _ in range(30):  # 3 s
                time.sleep(0.1)
                sock.sendall(b"\0")
        assert time.monotonic() - started < 2


def test_plain_http_on_the_tls_port_is_told_so(agent: ServerHandle) -> None:
    with connect(agent.port, ADMIN) as sock:
        sock.sendall(b"GET /auth/challenge HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"only speaks HTTPS" in answer


def test_client_slots_are_counted_per_address() -> None:
    slots = ClientSlots(per_ip=2)
    assert [slots.take("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert slots.take("10.0.0.2")  # another address has its own share
    slots.release("10.0.0.1")
    assert slots.take("10.0.0.1") and slots.open_for("10.0.0.1") == 2
