"""Noticing a TCP peer whose link died silently, on both ends of a session.

A link that dies without a reset (a radio gone, a cable pulled on a switch between)
says nothing to the side that is waiting: the admin waiting for the agent's answer,
or the agent waiting for its runner to finish an export while the admin is gone.
TCP keepalive probes the peer's kernel, which answers even while the peer's program
is busy, so a busy peer keeps the session; TCP_USER_TIMEOUT (Linux) ends it once sent
data or a probe has gone unacknowledged that long; elsewhere the probes' count does.
Ended this way, the socket reports an error to the next read, write or poll. The
other half, a slow link still flowing, must not look dead: writes go in `LINK_PIECE`s.
"""

from __future__ import annotations

import contextlib
import functools
import math
import socket

SocketOption = tuple[int, int, int]
# The most either side hands a socket in one write: one TLS record. Each write must
# finish within a timeout, so over a slow link that still flows a bigger piece would
# be taken for a dead one (the agent's answers, the admin's upload).
LINK_PIECE = 16 * 1024


def dead_link_options(after_s: float) -> list[SocketOption]:
    """Socket options that end a session whose link died, a little after `after_s`.

    A little after, so that while data should flow the caller's own read and write
    timeouts speak first (their message says more).
    """
    probe_s = max(1, math.ceil(after_s / 4))
    wanted = [("TCP_KEEPIDLE", probe_s), ("TCP_KEEPINTVL", probe_s), ("TCP_KEEPCNT", 4),
              ("TCP_USER_TIMEOUT", math.ceil((after_s + probe_s) * 1000))]
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    options += [(socket.IPPROTO_TCP, getattr(socket, name), value)
                for name, value in wanted if hasattr(socket, name)]
    return [option for option in options if _accepted(option)]


@functools.cache
def _accepted(option: SocketOption) -> bool:
    """Whether this system takes the option: Windows before 10 (1709) refuses the
    keepalive timings, and httpx would then fail the connect instead of going without."""
    with socket.socket() as probe:
        try:
            probe.setsockopt(*option)
        except OSError:
            return False
    return True


def watch_for_dead_link(sock: socket.socket, after_s: float) -> None:
    """Set `dead_link_options` on an open socket (without them the session only ends at
    the caller's own timeout, so one refused here is no reason to drop the client)."""
    for option in dead_link_options(after_s):
        with contextlib.suppress(OSError):
            sock.setsockopt(*option)
