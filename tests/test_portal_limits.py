"""The portal against the security audit's unauthenticated attacks, on real sockets:
a header that never ends, and silent or trickling connections from one address.

Each test starts its own portal; the attacker speaks from ATTACKER, the operator
from OPERATOR, as two machines on the plant network would.
"""

from __future__ import annotations

import socket
import time

import httpx

from autotel.config import Config
from autotel.web.server import ServerHandle
from tests.foundation_support import wait_for
from tests.limits_support import Flood, answer_time, connect, huge_header, read_response
from tests.portal_support import PIN, running_portal

ATTACKER = "127.0.0.2"
OPERATOR = "127.0.0.3"


def status_from(portal: ServerHandle, ip: str) -> int:
    transport = httpx.HTTPTransport(local_address=ip)
    with httpx.Client(base_url=f"http://127.0.0.1:{portal.port}", transport=transport,
                      timeout=10) as http:
        return http.get("/api/update/status", headers={"X-Config-Pin": PIN}).status_code


def test_a_huge_header_is_refused_before_it_is_read(bare_site: Config) -> None:
    with running_portal(bare_site) as portal:
        answer, sent_all = huge_header(portal.port, ATTACKER, 4 << 20)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
        assert b"Content-Length: 67\r\n" in answer  # a short text, then the connection closes
        assert not sent_all, "the portal read the whole 4 MiB header before answering"
        assert status_from(portal, ATTACKER) == 200


def test_silent_connections_do_not_lock_the_operator_out(bare_site: Config) -> None:
    with running_portal(bare_site) as portal, Flood(portal.port, ATTACKER, 40, "silent"):
        status, seconds = answer_time(lambda: status_from(portal, OPERATOR))
    assert status == 200 and seconds < 2


def test_a_header_trickle_is_cut_off_and_cannot_lock_the_operator_out(bare_site: Config) -> None:
    with running_portal(bare_site) as portal:
        portal.server.header_timeout_s = 1.0  # the default 10 s, shortened to keep the test fast
        with Flood(portal.port, ATTACKER, 40, "trickle") as flood:
            status, seconds = answer_time(lambda: status_from(portal, OPERATOR))
            assert status == 200 and seconds < 2
            wait_for(lambda: any(r.startswith(b"HTTP/1.1 408 ") for r in flood.replies),
                     timeout=3, what="a 408 for a header still trickling in after 1 s")


def test_one_address_keeps_only_its_share_of_connections(bare_site: Config) -> None:
    with running_portal(bare_site) as portal:
        share = portal.server.slots.per_ip
        assert share < portal.server.requests.min  # fewer than the worker threads
        socks = [connect(portal.port, ATTACKER) for _ in range(share + 5)]
        try:
            time.sleep(0.3)
            closed = sum(_closed_by_server(s) for s in socks)
            assert closed == 5
            assert status_from(portal, OPERATOR) == 200
        finally:
            for s in socks:
                s.close()


def test_the_deadline_spares_slow_bodies_and_quiet_keep_alives(bare_site: Config) -> None:
    """Only the request line and headers are timed: a login body that takes three times
    the header deadline still signs in, and so does a keep-alive request sent late."""
    body = b'{"pin": "%s"}' % PIN.encode()
    with (running_portal(bare_site) as portal, connect(portal.port, OPERATOR) as sock,
          sock.makefile("rb") as replies):
        portal.server.header_timeout_s = 0.5
        sock.sendall(b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in range(len(body)):
            time.sleep(1.5 / len(body))
            sock.sendall(body[byte:byte + 1])
        assert read_response(replies).startswith(b"HTTP/1.1 200 ")
        time.sleep(1.0)
        sock.sendall(b"GET /api/update/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"X-Config-Pin: %s\r\n\r\n" % PIN.encode())
        assert read_response(replies).startswith(b"HTTP/1.1 200 ")


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
