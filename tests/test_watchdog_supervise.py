"""`autotel watchdog` as a real process over real services: licence, restarts, flag, stop."""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

import pytest

from autotel.config import Config
from autotel.lockfile import ProcessLock
from autotel.watchdog.statusfile import pid_alive, watchdog_lock_file
from autotel.watchdog.supervisor import TICK_S
from tests.foundation_support import wait_for
from tests.watchdog_support import (
    WatchdogProcess,
    configure_site,
    license_site,
    python_command,
    run_cli,
    services,
)

SLEEPER = python_command("import time\nwhile True: time.sleep(1)")


@pytest.fixture
def licensed(site: Config, admin_keys: tuple[Path, Path]) -> Config:
    license_site(site, admin_keys[0])
    return site


def test_refuses_to_start_without_a_licence(site: Config) -> None:
    result = run_cli("watchdog", config=site)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "no licence file" in result.stderr
    assert services(site) == {}


def test_refuses_the_licence_of_another_site(licensed: Config) -> None:
    text = licensed.config_path.read_text()
    licensed.config_path.write_text(text.replace("client_id: plant_A", "client_id: plant_B"))
    result = run_cli("watchdog", config=licensed)
    assert result.returncode == 3 and "licence is for site 'plant_A'" in result.stderr
    assert services(licensed) == {}


def test_restarts_a_killed_service_with_growing_backoff(licensed: Config, tmp_path: Path) -> None:
    config = configure_site(licensed, collector={"command": SLEEPER},
                            watchdog={"min_backoff_s": 0.2, "stable_after_s": 60, "max_restarts": 10})
    with WatchdogProcess(config, tmp_path / "watchdog.out") as wd:
        backoffs = []
        for _ in range(3):
            entry = wd.wait_state("collector", "STARTING")
            os.kill(entry["pid"], signal.SIGKILL)
            restarted = wait_for(functools.partial(_respawned, config, entry["pid"]),
                                 what="a new collector")
            backoffs.append(restarted["backoff_s"])
        assert backoffs == [0.2, 0.4, 0.8]
        log = (config.state.logs / "watchdog.log").read_text()
        assert "collector: STARTING -> BACKOFF (killed by signal 9 (SIGKILL) after" in log
        assert "retry in 0.8 s" in log


def _respawned(config: Config, old_pid: int) -> dict[str, object] | None:
    entry = services(config)["collector"]
    return entry if entry["state"] == "STARTING" and entry["pid"] not in (None, old_pid) else None


def _replaced(config: Config, name: str, old_pid: int) -> bool:
    return services(config)[name]["pid"] not in (None, old_pid)


def test_a_crash_looping_service_goes_fatal_while_the_others_keep_running(
        licensed: Config, tmp_path: Path) -> None:
    crasher = python_command("import sys\nprint('sensor bus /dev/ttyS3 not found')\nsys.exit(3)")
    config = configure_site(licensed, collector={"command": crasher},
                            watchdog={"min_backoff_s": 0.05, "max_restarts": 2, "stable_after_s": 60})
    with WatchdogProcess(config, tmp_path / "watchdog.out") as wd:
        others = {name: wd.wait_state(name, "STARTING", "RUNNING")["pid"]
                  for name in ("runner", "agent", "portal")}
        fatal = wd.wait_state("collector", "FATAL")
        assert "exited with code 3: sensor bus /dev/ttyS3 not found" in fatal["reason"]
        assert "gave up after 3 failed starts in a row" in fatal["reason"]
        assert fatal["spawns"] == 3
        for name, pid in others.items():
            still = services(config)[name]
            assert still["pid"] == pid and pid_alive(pid) and still["state"] in ("STARTING", "RUNNING")
        config.state.restart_flag.write_text("")  # an update's restart gives it a new chance
        wait_for(lambda: services(config)["collector"]["spawns"] > 3, what="the collector to start again")


def test_restart_flag_restarts_every_service_and_is_removed(licensed: Config, tmp_path: Path) -> None:
    config = configure_site(licensed, collector={"command": SLEEPER})
    with WatchdogProcess(config, tmp_path / "watchdog.out") as wd:
        before = {name: wd.wait_state(name, "STARTING", "RUNNING")["pid"] for name in ("runner", "collector")}
        config.state.restart_flag.write_text("1.1.0\n")
        wait_for(lambda: not config.state.restart_flag.exists(), what="restart.flag to be removed")
        for name, old_pid in before.items():
            entry = wd.wait_state(name, "STARTING", "RUNNING")
            assert entry["pid"] != old_pid and entry["spawns"] == 2
            assert not pid_alive(old_pid)
        log = (config.state.logs / "watchdog.log").read_text()
        assert "runner: RUNNING -> STOPPING (restart requested (restart.flag))" in log \
            or "runner: STARTING -> STOPPING (restart requested (restart.flag))" in log


def test_a_second_watchdog_refuses_to_start(licensed: Config, tmp_path: Path) -> None:
    with WatchdogProcess(licensed, tmp_path / "watchdog.out") as wd:
        wd.wait_state("runner", "STARTING", "RUNNING")
        result = run_cli("watchdog", config=licensed)
        assert result.returncode == 7
        assert "another watchdog is already running" in result.stderr
        assert wd.proc is not None and wd.proc.poll() is None


def test_sigterm_stops_every_service_then_the_watchdog(licensed: Config, tmp_path: Path) -> None:
    config = configure_site(licensed, collector={"command": SLEEPER}, watchdog={"stop_timeout_s": 30.0})
    with WatchdogProcess(config, tmp_path / "watchdog.out") as wd:
        pids = [wd.wait_state(name, "STARTING", "RUNNING")["pid"] for name in ("runner", "collector")]
        wait_for(ProcessLock(config.state.run / "runner.lock", "runner").is_held_elsewhere,
                 what="the runner to be up")  # so it has its SIGTERM handler
        assert wd.proc is not None
        wd.proc.send_signal(signal.SIGTERM)
        assert wd.proc.wait(30) == 0
        entries = services(config)
        assert all(e["state"] == "STOPPED" for e in entries.values()), entries
        assert not any(pid_alive(pid) for pid in pids)
        assert entries["collector"]["reason"] == "stopped (killed by signal 15 (SIGTERM))"
        assert entries["runner"]["reason"] == "stopped (exited with code 0)"
        assert not run_cli("status", "--json", config=config).returncode  # readable afterwards
        assert watchdog_lock_file(config.state).exists()


def test_services_left_by_a_killed_watchdog_are_stopped_by_the_next(licensed: Config, tmp_path: Path) -> None:
    config = configure_site(licensed, collector={"command": SLEEPER})
    runner_lock = ProcessLock(config.state.run / "runner.lock", "runner")
    first = WatchdogProcess(config, tmp_path / "first.out").__enter__()
    old = {name: first.wait_state(name, "STARTING", "RUNNING")["pid"] for name in ("runner", "collector")}
    try:
        wait_for(runner_lock.is_held_elsewhere, what="the first runner to be up")
        assert first.proc is not None
        first.proc.kill()
        first.proc.wait()
        assert all(pid_alive(pid) for pid in old.values())  # orphans, still holding the runner lock
        with WatchdogProcess(config, tmp_path / "second.out"):
            for name, old_pid in old.items():
                wait_for(functools.partial(_replaced, config, name, old_pid), what=f"a new {name}")
                assert not pid_alive(old_pid)
            log = (config.state.logs / "watchdog.log").read_text()
            assert f"runner (pid {old['runner']}) was left running by a previous watchdog" in log
            wait_for(runner_lock.is_held_elsewhere, what="the new runner to take its lock")
            assert services(config)["runner"]["state"] in ("STARTING", "RUNNING")
    finally:
        for pid in old.values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_restart_flag_that_cannot_be_removed_restarts_once_and_the_watchdog_stays(
        licensed: Config, tmp_path: Path) -> None:
    """A folder in its place here; on Windows, a flag another program holds open. It once
    took the watchdog down, and every service and the database with it."""
    config = configure_site(licensed, collector={"command": SLEEPER})
    with WatchdogProcess(config, tmp_path / "watchdog.out") as wd:
        first = wd.wait_state("collector", "STARTING", "RUNNING")["pid"]
        config.state.restart_flag.mkdir()
        wait_for(lambda: wd.wait_state("collector", "STARTING", "RUNNING")["pid"] != first,
                 what="the restart the flag asked for")
        log = config.state.logs / "watchdog.log"
        wait_for(lambda: "cannot remove" in log.read_text(), what="the flag's error in the log")
        restarted = wd.wait_state("collector", "RUNNING")
        time.sleep(10 * TICK_S)
        again = wd.wait_state("collector", "RUNNING")
        assert (again["pid"], again["spawns"]) == (restarted["pid"], 2), "restarted only once"
        config.state.restart_flag.rmdir()
        config.state.restart_flag.write_text("1.2.0\n")  # the next update's flag
        wait_for(lambda: not config.state.restart_flag.exists(), what="the new flag handled")
        assert wd.wait_state("collector", "STARTING", "RUNNING")["spawns"] == 3
