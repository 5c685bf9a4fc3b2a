"""The supervisor loop: start every service, watch them, restart what dies, stop on request.

One thread, one loop, ticking every TICK_S: poll each child, feed what happened to
the state machine (`states`), start what is due, honour `restart.flag`. Every
transition is logged and published to `state/run/services.json`. Stopping asks each
child to stop, waits `watchdog.stop_timeout_s`, then kills what is left.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from autotel.config import Config
from autotel.timeutil import now_iso
from autotel.watchdog import states
from autotel.watchdog.process import Child, Launcher, ServiceSpec, describe_exit, last_line
from autotel.watchdog.states import Service, State, Transition
from autotel.watchdog.statusfile import write_services

log = logging.getLogger("autotel.watchdog")

TICK_S = 0.1
KILL_WAIT_S = 5.0


class Supervisor:
    def __init__(self, config: Config, specs: list[ServiceSpec], launcher: Launcher,
                 stop: threading.Event) -> None:
        self.policy = config.watchdog
        self.paths = config.state
        self.launcher = launcher
        self.stop = stop
        self.specs = {spec.name: spec for spec in specs}
        self.services = [Service(spec.name) for spec in specs]
        self.children: dict[str, Child] = {}
        self.killed: set[str] = set()  # services killed after the stop timeout
        self.started = now_iso()
        self.handled_flag: tuple[int, int] | None = None  # (inode, mtime) of one not removable

    def run(self) -> None:
        """Supervise until `stop` is set, then stop every service."""
        self._consume_flag("left over from before this start")
        if self.stop.is_set():  # asked to stop while the database was starting
            return
        try:
            self.start_all()
            while not self.stop.is_set():
                self.check()
                self.stop.wait(TICK_S)
        finally:
            self.stop_all("watchdog stopping")
            self._publish(running=False)

    def start_all(self) -> None:
        now = time.monotonic()
        self._record([self._spawn(svc, now) for svc in self.services])

    def check(self) -> None:
        """One tick: restart all on `restart.flag`, else reap, settle and restart services."""
        if self._flag_is_new():
            self.restart_all()
            return
        now = time.monotonic()
        changes = self._reap(now)
        for svc in self.services:
            settled = states.settle(svc, now, self.policy)
            if settled is not None:
                changes.append(settled)
            if states.due_for_start(svc, now):
                changes.append(self._spawn(svc, now))
        self._record(changes)

    def restart_all(self) -> None:
        """Graceful restart after an update: stop everything, start everything, drop the flag."""
        log.info("restart.flag found: restarting all services")
        self.stop_all("restart requested (restart.flag)")
        for svc in self.services:
            states.reset(svc)
        self.start_all()
        self._consume_flag("handled")

    def stop_all(self, why: str) -> None:
        """Ask every live service to stop; kill those still up after `stop_timeout_s`."""
        now = time.monotonic()
        changes = []
        for svc in self.services:
            if svc.state in (State.STOPPED, State.STOPPING):
                continue
            child = self.children.get(svc.name)
            if child is not None and svc.state in (State.STARTING, State.RUNNING):
                self.launcher.stop(child)
            changes.append(states.stopping(svc, now, why))
        self._record(changes)
        self._wait_stopped(time.monotonic() + self.policy.stop_timeout_s)
        if self.children:
            for name, child in self.children.items():
                log.warning("%s did not stop within %g s; killing it", name, self.policy.stop_timeout_s)
                self.killed.add(name)
                self.launcher.kill(child)
            self._wait_stopped(time.monotonic() + KILL_WAIT_S)

    def _wait_stopped(self, deadline: float) -> None:
        while self.children:
            self._record(self._reap(time.monotonic()))
            if not self.children or time.monotonic() >= deadline:
                return
            time.sleep(TICK_S / 2)

    def _reap(self, now: float) -> list[Transition]:
        changes = []
        for svc in self.services:
            child = self.children.get(svc.name)
            if child is None:
                continue
            code = self.launcher.poll(child)
            if code is not None:
                del self.children[svc.name]
                changes.append(states.exited(svc, self._exit_reason(svc.name, code), now, self.policy))
        return changes

    def _exit_reason(self, name: str, code: int) -> str:
        how = describe_exit(code)
        if name in self.killed:
            self.killed.discard(name)
            return f"{how}, as it did not stop within {self.policy.stop_timeout_s:g} s"
        printed = last_line(self.specs[name].console_log) if code > 0 else ""
        return f"{how}: {printed}" if printed else how

    def _spawn(self, svc: Service, now: float) -> Transition:
        try:
            child = self.launcher.spawn(self.specs[svc.name])
        except OSError as e:
            return states.spawn_failed(svc, str(e), now, self.policy)
        self.children[svc.name] = child
        return states.spawned(svc, child.pid, now)

    def _record(self, changes: list[Transition]) -> None:
        for change in changes:
            level = logging.WARNING if change.new in (State.BACKOFF, State.FATAL) else logging.INFO
            log.log(level, "%s", change.describe())
        if changes:
            self._publish(running=True)

    def _publish(self, running: bool) -> None:
        try:
            write_services(self.paths, self.started, self.services, running)
        except OSError as e:  # a full disk must not take the supervisor down with it
            log.error("cannot write the services file: %s", e)

    def _flag_is_new(self) -> bool:
        """`restart.flag` is there and is not one already handled that could not be removed.

        Such a flag (a folder made by hand; on Windows, a file another program holds open)
        must neither stop the watchdog nor restart the services at every tick: it is only
        tried again quietly. The `restart` step writes each flag anew, so an update's
        flag is always new.
        """
        try:
            info = self.paths.restart_flag.stat()
        except FileNotFoundError:
            self.handled_flag = None
            return False
        if (info.st_ino, info.st_mtime_ns) != self.handled_flag:
            return True
        with contextlib.suppress(OSError):
            self.paths.restart_flag.unlink()
        return False

    def _consume_flag(self, why: str) -> None:
        flag = self.paths.restart_flag
        try:
            info = flag.stat()
        except FileNotFoundError:
            return
        try:
            flag.unlink()
        except FileNotFoundError:
            return
        except OSError as e:
            self.handled_flag = (info.st_ino, info.st_mtime_ns)
            log.error("cannot remove %s (%s): %s; the services are not restarted again for it. "
                      "Delete it by hand", flag, why, e.strerror or e)
            return
        log.info("removed %s (%s)", flag, why)
