"""Who may try a PIN right now: per-IP lockout and a throttle across all IPs.

Pure logic with an injectable monotonic clock, so the rules are tested with plain
numbers. The portal asks `refusal(ip)` before comparing a PIN and reports the
outcome with `failure(ip)` / `success(ip)`.

Rules (DESIGN.md, Settled details, Portal): five wrong PINs in a row from one IP
lock that IP out for five minutes, even for the right PIN; wrong PINs from all IPs
together are throttled too, so many addresses cannot share the guessing. Requests
that carry a valid session cookie never reach this check, so a throttle started by
an attacker does not log out an operator who is already signed in. Nor does it keep
out the site's own screen (a loopback address), often the operator's panel: guessing
from the network must not lock the plant out of its updates. Loopback guesses are
still counted, and locked out per IP like any other.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

PER_IP_LIMIT = 5
PER_IP_LOCK_S = 300.0
GLOBAL_LIMIT = 20
GLOBAL_WINDOW_S = 300.0
MAX_TRACKED_IPS = 10_000


@dataclass
class _IpRecord:
    wrong_in_row: int = 0
    locked_until: float = 0.0


class PinThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic, *,
                 per_ip_limit: int = PER_IP_LIMIT, lock_s: float = PER_IP_LOCK_S,
                 global_limit: int = GLOBAL_LIMIT,
                 global_window_s: float = GLOBAL_WINDOW_S) -> None:
        self.clock = clock
        self.per_ip_limit = per_ip_limit
        self.lock_s = lock_s
        self.global_limit = global_limit
        self.global_window_s = global_window_s
        self._ips: dict[str, _IpRecord] = {}
        self._recent_failures: deque[float] = deque()

    def refusal(self, ip: str) -> float | None:
        """Seconds until `ip` may try a PIN again, or None when it may try now."""
        now = self.clock()
        record = self._ips.get(ip)
        if record is not None and record.locked_until > now:
            return record.locked_until - now
        self._forget_old_failures(now)
        if len(self._recent_failures) >= self.global_limit and not _is_loopback(ip):
            return self._recent_failures[0] + self.global_window_s - now
        return None

    def failure(self, ip: str) -> None:
        now = self.clock()
        self._forget_old_failures(now)
        self._recent_failures.append(now)
        record = self._ips.get(ip)
        if record is None or (record.locked_until and record.locked_until <= now):
            record = self._track(ip)
        record.wrong_in_row += 1
        if record.wrong_in_row >= self.per_ip_limit:
            record.locked_until = now + self.lock_s

    def success(self, ip: str) -> None:
        self._ips.pop(ip, None)

    def _track(self, ip: str) -> _IpRecord:
        """A fresh record; the oldest one is dropped when too many IPs are tracked."""
        self._ips.pop(ip, None)
        if len(self._ips) >= MAX_TRACKED_IPS:
            self._ips.pop(next(iter(self._ips)))
        record = self._ips[ip] = _IpRecord()
        return record

    def _forget_old_failures(self, now: float) -> None:
        while self._recent_failures and self._recent_failures[0] <= now - self.global_window_s:
            self._recent_failures.popleft()


def _is_loopback(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
