"""Broken, stalled and unstorable request bodies at the agent, over real TLS sockets.

Each must end in a JSON 4xx (507 for the site's own full disk), a warning without a
traceback, a sessions.jsonl line for an update, nothing left in `state/incoming/`,
and an agent that still serves.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autotel.spool.queue import Spool
from autotel.web.bodies import BoundedChunkedRFile
from tests.agent_support import RunningAgent, login, make_site, running_agent, with_agent
from tests.foundation_support import wait_for
from tests.limits_support import exchange as raw_exchange
from tests.limits_support import tls_wrapper
from tests.package_support import craft, signature_b64

SOCKET_TIMEOUT_S = 2
_addresses = itertools.count(10)


@pytest.fixture(scope="module")
def agent(
    admin_keys: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningAgent]:
    """A site without a database (nothing here reaches one), a short socket timeout."""
    config = make_site(tmp_path_factory.mktemp("bodies") / "site", "", admin_keys[1])
    config = with_agent(config, socket_timeout_s=SOCKET_TIMEOUT_S)
    with running_agent(config, migrate=False) as running:
        yield running


@pytest.fixture
def token(agent: RunningAgent, admin_keys: tuple[Path, Path]) -> str:
    with agent.client(ip=f"127.0.3.{next(_addresses)}") as client:
        return login(agent, client, admin_keys[0])


def exchange(agent: RunningAgent, request: bytes) -> bytes:
    """Send raw bytes over TLS and read the answer until the agent closes the connection."""
    return raw_exchange(agent.port, request, source_ip=f"127.0.4.{next(_addresses)}",
                        wrap=tls_wrapper(agent.ssl_context()), timeout=SOCKET_TIMEOUT_S * 5)


def json_reply(reply: bytes, status: int) -> dict[str, object]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
    assert b"Content-Type: application/json" in head
    data = json.loads(body)
    assert isinstance(data, dict) and data["error"]
    return data


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """The client's fault is a warning: nothing at ERROR, no traceback, from the web layer."""
    ours = [r for r in caplog.records if r.name.startswith(("autotel.agent", "autotel.web"))]
    assert not [r for r in ours if r.levelno >= logging.ERROR or r.exc_info], [
        r.getMessage() for r in ours]
    assert [r for r in ours if r.levelno == logging.WARNING]


def assert_still_serving(agent: RunningAgent) -> None:
    with agent.client(ip=f"127.0.5.{next(_addresses)}") as fresh:
        assert fresh.get("/auth/challenge").status_code == 200


def last_session(agent: RunningAgent) -> dict[str, object]:
    return dict(json.loads(agent.config.state.sessions.read_text().splitlines()[-1]))


def test_bad_chunk_size_at_auth_is_400(
    agent: RunningAgent, caplog: pytest.LogCaptureFixture
) -> None:
    reply = exchange(agent, b"POST /auth HTTP/1.1\r\nHost: x\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert "chunked" in str(json_reply(reply, 400)["error"])
    assert_no_traceback(caplog)
    assert_still_serving(agent)


def test_a_huge_chunk_is_refused_as_it_arrives_not_buffered_whole(
    agent: RunningAgent, caplog: pytest.LogCaptureFixture
) -> None:
    """No login needed to try: a chunk declared 2 GiB, its first piece sent. cheroot
    alone would wait to hold the whole chunk in memory (and answer 408 at the timeout);
    the agent answers 413 from that piece, before the client sends any more. (Exactly one
    piece: more would be unread when the agent closes, and the reset could lose the answer.)"""
    with (
        socket.create_connection(
            ("127.0.0.1", agent.port), source_address=(f"127.0.4.{next(_addresses)}", 0)
        ) as raw,
        agent.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.settimeout(SOCKET_TIMEOUT_S / 2)  # an answer only at the socket timeout fails
        tls.sendall(b"POST /auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"7fffffff\r\n" + b"A" * BoundedChunkedRFile.PIECE)
        reply = tls.recv(65536)
        head, _, body = reply.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += tls.recv(65536)
    json_reply(head + b"\r\n\r\n" + body, 413)
    assert_no_traceback(caplog)
    assert_still_serving(agent)


def test_stalled_update_upload_is_408_and_recorded(
    agent: RunningAgent, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Content-Length 100000, a few bytes, then silence: answered once the socket times out."""
    reply = exchange(agent, (
        f"POST /update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "X-Update-Version: 1.6.0\r\nContent-Length: 100000\r\n\r\n").encode() + b"PK" * 10)
    body = json_reply(reply, 408)
    assert body["status"] == "invalid_package"
    assert last_session(agent)["version"] == "1.6.0"
    assert last_session(agent)["status"] == "incomplete"
    assert list(agent.config.state.incoming.iterdir()) == []
    assert_no_traceback(caplog)
    assert_still_serving(agent)


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_since_with_no_utc_equivalent_is_400(
    agent: RunningAgent, token: str, since: str, caplog: pytest.LogCaptureFixture
) -> None:
    with agent.client(ip=f"127.0.3.{next(_addresses)}") as client:
        answer = client.get("/data/export", params={"since": since},
                            headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 400, answer.text
    assert "since" in answer.json()["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
def full_disk(agent: RunningAgent) -> Iterator[Path]:
    """A 3 MB tmpfs on the site's `state/incoming/` (the tests run as root)."""
    incoming = agent.config.state.incoming
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(incoming)], check=True)
    try:
        yield incoming
    finally:
        subprocess.run(["umount", str(incoming)], check=True)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upload_onto_a_full_disk_is_507_and_recorded(
    agent: RunningAgent, token: str, full_disk: Path, tmp_path: Path,
    admin_keys: tuple[Path, Path], framing: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Declared, it is refused before a byte is written; chunked, when the disk fills up."""
    package = craft(tmp_path / "big.zip", admin_keys[0], {"app/blob.bin": os.urandom(5_000_000)},
                    manifest={"version": "2.0.0"})
    data = package.read_bytes()

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start:start + 256 * 1024]

    with agent.client(ip=f"127.0.3.{next(_addresses)}") as client:
        answer = client.post("/update", content=data if framing == "content-length" else pieces(),
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/zip",
                                      "X-Update-Version": "2.0.0",
                                      "X-Manifest-Signature": signature_b64(package)})
    assert answer.status_code == 507, answer.text
    body = answer.json()
    assert body["status"] == "disk_full" and "disk is full" in body["error"]
    assert "MB" in body["error"] and "free" in body["error"]
    assert last_session(agent)["version"] == "2.0.0"
    assert last_session(agent)["status"] == "disk_full"
    assert list(full_disk.iterdir()) == [], "an upload was left behind"
    assert_no_traceback(caplog)
    assert_still_serving(agent)



def test_an_admin_who_gives_up_waiting_for_an_export_frees_its_place_at_once(
    agent: RunningAgent, token: str
) -> None:
    """The runner is busy for 8 s, the admin's client gives up after 1 s. The agent must
    stop waiting for it then: holding the worker and the address's place until the job
    ends (up to agent.export_timeout_s, an hour) locked an admin address out after eight
    such pushes. Last in this file: the runner stays busy after it."""
    Spool(agent.config.state).submit("wait", {"seconds": 8})
    ip = f"127.0.6.{next(_addresses)}"
    slots = agent.handle.server.slots
    with agent.client(ip=ip) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/data/export", headers={"Authorization": f"Bearer {token}"}, timeout=1)
    started = time.monotonic()
    wait_for(lambda: slots.open_for(ip) == 0, 4, "the address's place freed")
    assert time.monotonic() - started < 4, "freed before the runner was free again"
    assert_still_serving(agent)
