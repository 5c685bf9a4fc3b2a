"""The portal against the security audit's unauthenticated attacks, on real sockets:
a header that never ends.
"""

from __future__ import annotations

import httpx

from autotel.config import Config
from autotel.web.server import ServerHandle
from tests.limits_support import huge_header
from tests.portal_support import PIN, running_portal

ATTACKER = "127.0.0.2"


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
