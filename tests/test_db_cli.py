"""`autotel db migrate` through a real subprocess (`python -m autotel`)."""

from __future__ import annotations

import os
import subprocess
import sys

from autotel.config import Config
from autotel.db import connect
from autotel.db.embedded import read_postmaster
from autotel.lockfile import ProcessLock
from autotel.watchdog.statusfile import watchdog_lock_file


def _autotel(
    config: Config, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the tests check returncode themselves
        [sys.executable, "-m", "autotel", "--config", str(config.config_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


APPLIED = "applied 0001_readings.sql\napplied 0002_export_witness.sql\n"


def test_db_migrate_applies_then_reports_up_to_date(site: Config) -> None:
    first = _autotel(site, "db", "migrate")
    assert (first.returncode, first.stdout, first.stderr) == (0, APPLIED, "")
    second = _autotel(site, "db", "migrate")
    assert second.returncode == 0
    assert second.stdout.startswith("the database schema is up to date")


def test_unreachable_dsn_gives_one_clear_line_without_the_password(site: Config) -> None:
    dsn = "postgresql://plant:s3cret-pw@127.0.0.1:1/telemetry"
    result = _autotel(site, "db", "migrate", env={"AUTOTEL_DATABASE__DSN": dsn})
    assert result.returncode == 6
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("autotel: error: cannot connect to the site database")
    assert "127.0.0.1" in lines[0] and "database.dsn" in lines[0]
    assert "s3cret-pw" not in result.stderr


def test_malformed_dsn_is_a_clear_error(site: Config) -> None:
    result = _autotel(
        site, "db", "migrate", env={"AUTOTEL_DATABASE__DSN": "host=x password=hunter2 oops"}
    )
    assert result.returncode == 6
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "hunter2" not in result.stderr


def test_db_migrate_on_the_embedded_database_leaves_it_running(embedded_site: Config) -> None:
    first = _autotel(embedded_site, "db", "migrate")
    assert (first.returncode, first.stdout, first.stderr) == (0, APPLIED, "")
    with connect(embedded_site) as conn:  # the CLI process has exited; its server has not
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (0,)
    second = _autotel(embedded_site, "db", "migrate")
    assert second.stdout.startswith("the database schema is up to date")
    stopped = _autotel(embedded_site, "db", "stop")
    assert (stopped.returncode, stopped.stdout) == (0, "the embedded database is stopped\n")
    assert read_postmaster(embedded_site.state.pgdata) is None


def test_db_stop_refuses_while_the_watchdog_runs(bare_site: Config) -> None:
    """The watchdog's services need the database; stopping the watchdog stops it too."""
    bare_site.state.create()
    with ProcessLock(watchdog_lock_file(bare_site.state), "watchdog"):  # as a running watchdog
        refused = _autotel(bare_site, "db", "stop")
    assert refused.returncode == 7 and refused.stdout == ""
    assert "watchdog of this site is running" in refused.stderr
    assert "stop the watchdog instead" in refused.stderr and len(refused.stderr.splitlines()) == 1
