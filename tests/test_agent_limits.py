"""The agent against the security audit's unauthenticated attacks, over real TLS:
a header that never ends.

Each test starts its own agent (no runner: nothing here reaches a job).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from autotel.config import Config
from autotel.web.agent import build_agent
from autotel.web.server import ServerHandle
from tests.limits_support import huge_header, tls_wrapper

ATTACKER = "127.0.0.2"


@pytest.fixture
def agent(bare_site: Config) -> Iterator[ServerHandle]:
    local = bare_site.model_copy(update={"agent": bare_site.agent.model_copy(
        update={"host": "127.0.0.1"})})
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
