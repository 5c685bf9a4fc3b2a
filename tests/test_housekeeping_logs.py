"""sessions.jsonl and the services' console logs stay bounded, one previous generation kept."""

from __future__ import annotations

import json
import threading

from autotel.config import CollectorConfig, Config, RetentionConfig, WatchdogConfig
from autotel.fsutil import MB, previous_generation
from autotel.watchdog.console import READ_BYTES
from autotel.watchdog.process import SubprocessLauncher
from autotel.watchdog.services import COLLECTOR, service_specs
from autotel.watchdog.supervisor import Supervisor
from autotel.web.agent.sessions import record_session
from tests.foundation_support import wait_for
from tests.watchdog_support import python_command, services

LIMIT_BYTES = 1000


def test_sessions_rotate_at_the_limit_and_keep_the_latest_lines_in_order(bare_site: Config) -> None:
    log = bare_site.state.sessions
    for n in range(40):
        record_session(log, "10.0.0.1", "export", records=n, status="ok", max_mb=LIMIT_BYTES / MB)
        assert not log.exists() or log.stat().st_size <= LIMIT_BYTES
    older = previous_generation(log).read_text().splitlines()
    newer = log.read_text().splitlines() if log.exists() else []
    assert previous_generation(log).stat().st_size > LIMIT_BYTES
    records = [json.loads(line)["records"] for line in older + newer]
    assert records == list(range(40 - len(records), 40)), "the newest lines, none lost between"
    assert 0 < len(older) < 40


def test_sessions_written_by_many_threads_are_never_torn(bare_site: Config) -> None:
    log = bare_site.state.sessions

    def serve(peer: int) -> None:
        for n in range(30):
            record_session(log, f"10.0.0.{peer}", "update", version="1.0.0", records=n,
                           status="ok", max_mb=LIMIT_BYTES / MB)

    threads = [threading.Thread(target=serve, args=(peer,)) for peer in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    kept = previous_generation(log).read_text().splitlines()
    kept += log.read_text().splitlines() if log.exists() else []
    assert kept and all(json.loads(line)["status"] == "ok" for line in kept)
    assert not log.exists() or log.stat().st_size <= LIMIT_BYTES


def test_a_console_log_is_rotated_when_its_service_restarts(bare_site: Config) -> None:
    crash = python_command("import os, sys; print('run', os.getpid(), 'x' * 1500); sys.exit(3)")
    config = bare_site.model_copy(update={
        "collector": CollectorConfig(command=crash),
        "retention": RetentionConfig(console_log_max_mb=LIMIT_BYTES / MB),
        "watchdog": WatchdogConfig(min_backoff_s=0.05, max_backoff_s=0.1, max_restarts=20),
    })
    specs = [spec for spec in service_specs(config) if spec.name == COLLECTOR]
    assert specs[0].console_log_max_bytes == LIMIT_BYTES
    console_log = specs[0].console_log
    stop = threading.Event()
    thread = threading.Thread(target=Supervisor(config, specs, SubprocessLauncher(), stop).run)
    thread.start()
    try:
        wait_for(lambda: services(config).get(COLLECTOR, {}).get("spawns", 0) >= 4,
                 what="the crashing collector to be restarted three times")
    finally:
        stop.set()
        thread.join(30)
    runs = previous_generation(console_log).read_text().splitlines()
    assert len(runs) == 1 and runs[0].startswith("run "), "one whole previous run, older ones gone"
    current = console_log.read_text().splitlines()
    assert len(current) <= 1 and current != runs


def test_a_console_log_stays_bounded_while_its_service_runs_on(bare_site: Config) -> None:
    """A collector that prints for months without a restart: its console log is rotated
    while it runs, and the log still ends with what it printed last."""
    chatty = python_command(
        "import sys, time\n"
        "for n in range(2000): print('line', n, 'x' * 200, flush=True)\n"
        "print('all printed', flush=True)\n"
        "time.sleep(600)"
    )
    config = bare_site.model_copy(update={
        "collector": CollectorConfig(command=chatty),
        "retention": RetentionConfig(console_log_max_mb=LIMIT_BYTES / MB),
    })
    specs = [spec for spec in service_specs(config) if spec.name == COLLECTOR]
    console_log = specs[0].console_log
    stop = threading.Event()
    thread = threading.Thread(target=Supervisor(config, specs, SubprocessLauncher(), stop).run)
    thread.start()
    try:
        wait_for(lambda: console_log.exists() and "all printed" in console_log.read_text(),
                 what="the collector's last line in its console log")
        printed = 2000 * 210
        for path in (console_log, previous_generation(console_log)):
            assert path.stat().st_size <= LIMIT_BYTES + READ_BYTES < printed / 4, path
        assert services(config)[COLLECTOR]["spawns"] == 1, "rotated without a restart"
    finally:
        stop.set()
        thread.join(30)
