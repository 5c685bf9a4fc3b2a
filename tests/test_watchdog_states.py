"""The service state machine with plain values (no processes), and the spawn seam with a fake."""

from __future__ import annotations

import errno
import functools
import sys
import threading
from pathlib import Path

import pytest

from autotel.config import Config, WatchdogConfig
from autotel.watchdog import states
from autotel.watchdog.process import ServiceSpec, SubprocessLauncher
from autotel.watchdog.services import split_command
from autotel.watchdog.states import Service, State
from autotel.watchdog.statusfile import pid_alive
from autotel.watchdog.supervisor import Supervisor
from tests.foundation_support import wait_for
from tests.watchdog_support import service_in, services

POLICY = WatchdogConfig(min_backoff_s=0.5, max_backoff_s=4.0, stable_after_s=10.0, max_restarts=3)


@pytest.mark.parametrize(("failures", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)])
def test_backoff_doubles_up_to_the_maximum(failures: int, delay: float) -> None:
    assert states.backoff_delay(failures, POLICY) == delay


def test_quick_crashes_back_off_longer_each_time_then_go_fatal() -> None:
    svc = Service("collector")
    seen = []
    now = 0.0
    for _ in range(POLICY.max_restarts + 1):
        states.spawned(svc, pid=100, now=now)
        now += 1.0
        change = states.exited(svc, "exited with code 3", now, POLICY)
        seen.append((change.new, svc.backoff_s))
        now = svc.retry_at
    assert seen == [(State.BACKOFF, 0.5), (State.BACKOFF, 1.0), (State.BACKOFF, 2.0), (State.FATAL, 2.0)]
    assert svc.reason == "exited with code 3 after 1.0 s; gave up after 4 failed starts in a row"
    assert not states.due_for_start(svc, now + 100)


def test_a_stable_service_that_crashes_starts_a_new_series() -> None:
    svc = Service("runner")
    states.spawned(svc, pid=1, now=0.0)
    states.exited(svc, "exited with code 1", 1.0, POLICY)
    states.spawned(svc, pid=2, now=svc.retry_at)
    assert states.settle(svc, svc.retry_at + 5, POLICY) is None
    settled = states.settle(svc, svc.retry_at + 10, POLICY)
    assert settled is not None and svc.state is State.RUNNING and svc.failures == 0
    change = states.exited(svc, "killed by signal 9 (SIGKILL)", 1000.0, POLICY)
    assert change.new is State.BACKOFF and svc.backoff_s == 0.5 and svc.failures == 1


def test_stopping_is_expected_and_not_a_failure() -> None:
    svc = Service("agent")
    states.spawned(svc, pid=7, now=0.0)
    assert states.stopping(svc, 1.0, "watchdog stopping").new is State.STOPPING
    change = states.exited(svc, "exited with code 0", 2.0, POLICY)
    assert change.new is State.STOPPED and svc.failures == 0 and svc.reason == "stopped (exited with code 0)"
    waiting = Service("portal", state=State.BACKOFF)
    assert states.stopping(waiting, 0.0, "restart").new is State.STOPPED


def test_every_transition_is_recorded_with_its_reason() -> None:
    svc = Service("collector")
    states.spawn_failed(svc, "[Errno 11] Resource temporarily unavailable", 0.0, POLICY)
    assert [t.describe() for t in svc.history] == [
        ("collector: STOPPED -> BACKOFF (cannot start: [Errno 11] Resource temporarily "
         "unavailable; retry in 0.5 s)")]


@pytest.mark.parametrize(("command", "windows", "argv"), [
    ("python -m demo --rate 2", False, ["python", "-m", "demo", "--rate", "2"]),
    ("'/opt/my tools/collect' -v", False, ["/opt/my tools/collect", "-v"]),
    (r'"C:\Program Files\Plant\collect.exe" --port COM3', True,
     [r"C:\Program Files\Plant\collect.exe", "--port", "COM3"]),
])
def test_collector_command_is_split_like_the_sites_shell(command: str, windows: bool,
                                                        argv: list[str]) -> None:
    assert split_command(command, windows=windows) == argv


class RefusingLauncherFake:
    """A fake of the OS: refuses to spawn the named services (EAGAIN, as on a full process table)."""

    def __init__(self, refuse: set[str]) -> None:
        self.real = SubprocessLauncher()
        self.refuse = refuse

    def spawn(self, spec: ServiceSpec):  # type: ignore[no-untyped-def]
        if spec.name in self.refuse:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return self.real.spawn(spec)

    def stop(self, child) -> None:  # type: ignore[no-untyped-def]
        self.real.stop(child)

    def kill(self, child) -> None:  # type: ignore[no-untyped-def]
        self.real.kill(child)

    def poll(self, child):  # type: ignore[no-untyped-def]
        return self.real.poll(child)


def test_a_service_that_cannot_spawn_goes_fatal_and_the_others_run(bare_site: Config, tmp_path: Path) -> None:
    config = bare_site.model_copy(update={"watchdog": WatchdogConfig(min_backoff_s=0.05, max_restarts=2)})
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    specs = [ServiceSpec(name, sleeper, tmp_path, tmp_path / f"{name}.log") for name in ("sensor", "display")]
    stop = threading.Event()
    supervisor = Supervisor(config, specs, RefusingLauncherFake({"sensor"}), stop)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        fatal = wait_for(functools.partial(service_in, config, "sensor", "FATAL"),
                         what="sensor FATAL")
        assert fatal["reason"].startswith("cannot start: [Errno 11] Resource temporarily unavailable")
        assert "gave up after 3 failed starts" in fatal["reason"]
        display = services(config)["display"]
        assert display["state"] == "STARTING" and display["pid"]
    finally:
        stop.set()
        thread.join(30)
    assert {e["state"] for e in services(config).values()} == {"STOPPED"}


def test_a_service_that_ignores_stop_is_killed_after_the_timeout(bare_site: Config, tmp_path: Path) -> None:
    config = bare_site.model_copy(update={"watchdog": WatchdogConfig(stop_timeout_s=0.5)})
    stubborn = [sys.executable, "-c", ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                       "print('ready', flush=True)\nwhile True: time.sleep(1)")]
    spec = ServiceSpec("stubborn", stubborn, tmp_path, tmp_path / "stubborn.log")
    stop = threading.Event()
    thread = threading.Thread(target=Supervisor(config, [spec], SubprocessLauncher(), stop).run)
    thread.start()
    try:
        wait_for(lambda: spec.console_log.exists() and "ready" in spec.console_log.read_text(),
                 what="the stubborn service to ignore SIGTERM")
        pid = services(config)["stubborn"]["pid"]
    finally:
        stop.set()
        thread.join(30)
    entry = services(config)["stubborn"]
    assert entry["state"] == "STOPPED" and not pid_alive(pid)
    assert entry["reason"] == "stopped (killed by signal 9 (SIGKILL), as it did not stop within 0.5 s)"
