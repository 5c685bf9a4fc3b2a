"""The life of one supervised service, as an explicit state machine (after Supervisor).

    STOPPED ──start──> STARTING ──up for stable_after_s──> RUNNING
                          │                                   │
                          │ exits / cannot spawn              │ exits (it had been stable)
                          v                                   v
    FATAL <──too many── BACKOFF <─────────────────────────────┘
                          │ backoff elapsed: spawn again ──> STARTING
    STARTING, RUNNING ──stop──> STOPPING ──exits──> STOPPED
    BACKOFF, FATAL    ──stop──> STOPPED

Pure: every function takes the current `time.monotonic()` value and mutates one
`Service`, returning a `Transition` for the caller to log and publish. A failure
always records a reason a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from autotel.config import WatchdogConfig


class State(StrEnum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    FATAL = "FATAL"


ALIVE = (State.STARTING, State.RUNNING, State.STOPPING)


@dataclass
class Service:
    name: str
    state: State = State.STOPPED
    pid: int | None = None
    since: float = 0.0          # monotonic time of the last transition
    spawned_at: float = 0.0     # monotonic time of the last successful spawn
    failures: int = 0           # failed starts in a row; reset once the service is stable
    spawns: int = 0             # every successful spawn since the watchdog started
    backoff_s: float = 0.0
    retry_at: float = 0.0
    reason: str = ""
    history: list[Transition] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Transition:
    service: str
    old: State
    new: State
    reason: str

    def describe(self) -> str:
        return f"{self.service}: {self.old} -> {self.new}" + (f" ({self.reason})" if self.reason else "")


def _move(svc: Service, new: State, now: float, reason: str = "") -> Transition:
    transition = Transition(svc.name, svc.state, new, reason)
    svc.state, svc.since = new, now
    if reason:
        svc.reason = reason
    svc.history.append(transition)
    return transition


def backoff_delay(failures: int, policy: WatchdogConfig) -> float:
    """The wait before restart number `failures`: doubling from min to max backoff."""
    return float(min(policy.min_backoff_s * 2 ** max(failures - 1, 0), policy.max_backoff_s))


def spawned(svc: Service, pid: int, now: float) -> Transition:
    """STOPPED or BACKOFF -> STARTING: the process exists; it must still prove stable."""
    svc.pid, svc.spawned_at = pid, now
    svc.spawns += 1
    return _move(svc, State.STARTING, now, f"pid {pid}")


def spawn_failed(svc: Service, error: str, now: float, policy: WatchdogConfig) -> Transition:
    """STOPPED or BACKOFF -> BACKOFF or FATAL: the OS would not start it; counts as a failure."""
    svc.pid = None
    return _failed(svc, f"cannot start: {error}", now, policy)


def exited(svc: Service, how: str, now: float, policy: WatchdogConfig) -> Transition:
    """The process ended. Expected while STOPPING; otherwise a failure with its reason."""
    svc.pid = None
    if svc.state is State.STOPPING:
        return _move(svc, State.STOPPED, now, f"stopped ({how})")
    if svc.state is State.RUNNING:
        svc.failures = 0  # it had been stable: this crash starts a new series
    return _failed(svc, f"{how} after {now - svc.spawned_at:.1f} s", now, policy)


def _failed(svc: Service, reason: str, now: float, policy: WatchdogConfig) -> Transition:
    svc.failures += 1
    if svc.failures > policy.max_restarts:
        # Crash-looping: restarting again would only burn CPU and fill logs; give up
        # on this one service and leave the others running.
        return _move(svc, State.FATAL, now,
                     f"{reason}; gave up after {svc.failures} failed starts in a row")
    svc.backoff_s = backoff_delay(svc.failures, policy)
    svc.retry_at = now + svc.backoff_s
    return _move(svc, State.BACKOFF, now, f"{reason}; retry in {svc.backoff_s:g} s")


def settle(svc: Service, now: float, policy: WatchdogConfig) -> Transition | None:
    """STARTING -> RUNNING once the process has stayed up `stable_after_s`."""
    if svc.state is State.STARTING and now - svc.spawned_at >= policy.stable_after_s:
        svc.failures, svc.backoff_s = 0, 0.0
        return _move(svc, State.RUNNING, now, f"pid {svc.pid}, up {policy.stable_after_s:g} s")
    return None


def due_for_start(svc: Service, now: float) -> bool:
    """A service in BACKOFF whose wait is over (STOPPED ones are started explicitly)."""
    return svc.state is State.BACKOFF and now >= svc.retry_at


def stopping(svc: Service, now: float, why: str) -> Transition:
    """STARTING or RUNNING -> STOPPING (asked to stop); BACKOFF or FATAL -> STOPPED at once."""
    if svc.state in (State.STARTING, State.RUNNING):
        return _move(svc, State.STOPPING, now, why)
    return _move(svc, State.STOPPED, now, why)


def reset(svc: Service) -> None:
    """Forget past failures: a restart of all services gives even a FATAL one a new chance."""
    svc.failures, svc.backoff_s, svc.retry_at = 0, 0.0, 0.0
