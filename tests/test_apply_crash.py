"""`kill -9` of a real runner at every step boundary of an apply, in the middle of the
patch, inside the migration's transaction and during the rollback; the next runner
must leave the site wholly on the new version (resumed) or wholly on the old one.

The kill points are named by the apply code's test seam (`autotel.apply.faults`): the
worker stops at the point and says so in a file, and the test SIGKILLs the runner
(its step worker exits with it). Each test kills the same job several times in a
row, each time at a later point, so every point is hit once while a test starts a
runner per point rather than two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autotel.apply.faults import HALT_ENV, HALTED_FILE
from autotel.config import Config
from autotel.db import connect
from autotel.spool.queue import Spool
from tests.apply_support import (
    BAD_MIGRATION,
    GOOD_MIGRATION,
    NEW_FILES,
    Release,
    prepare,
)
from tests.foundation_support import RunnerProcess, pid_alive, running, wait_for

MID_MIGRATION = "mid-migration"  # not a seam: the kill lands while PostgreSQL runs pg_sleep
SLOW_MIGRATION = ("0099_slow.sql", "CREATE TABLE apply_slow (id int);\nSELECT pg_sleep(3);\n")

# Together the first two chains cover every boundary of every step.
FORWARD_A = ["verify:start", "verify:staged", "backup:start", "backup:end", "patch:replaced:3",
             "migrate:start", "restart:start", "restart:flag"]
FORWARD_B = ["verify:end", "backup:written", "patch:start", "patch:replaced:1", "patch:end",
             MID_MIGRATION, "migrate:end", "restart:version", "restart:end"]
BACKWARD = ["patch:replaced:2", "rollback:start", "rollback:restored:2", "rollback:end"]
# With the update unpacked ahead: killed before taking its files over, while taking
# them over (the apply must then unpack the package itself), and after.
AHEAD = ["verify:start", "verify:adopting", "verify:staged"]


def kill_at(config: Config, point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start a runner, let it reach `point`, kill -9 it, and wait until its worker is gone."""
    halted = config.state.run / HALTED_FILE
    if point == MID_MIGRATION:
        monkeypatch.delenv(HALT_ENV, raising=False)
    else:
        monkeypatch.setenv(HALT_ENV, point)
    runner = RunnerProcess(config).start()
    if point == MID_MIGRATION:
        wait_for(lambda: _sleeping_in_migration(config), 60, "the migration to run")
    else:
        wait_for(lambda: halted.exists() and halted.read_text().strip() == point, 60, point)
    workers = runner.children()
    runner.kill()
    wait_for(lambda: not any(pid_alive(p) for p in workers), 20, "the step worker to exit")
    halted.unlink(missing_ok=True)
    monkeypatch.delenv(HALT_ENV, raising=False)


def _sleeping_in_migration(config: Config) -> bool:
    with connect(config, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s "
                           "AND state = 'active' AND pid <> pg_backend_pid()",
                           ("%pg_sleep(3)%",)).fetchone()
    return bool(row and row[0])


def crash_through(release: Release, points: list[str],
                  monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Submit the apply, kill the runner at each point in turn, then let a runner finish it."""
    job_id = Spool(release.config.state).submit("apply", {"sha256": release.sha256})
    for point in points:
        kill_at(release.config, point, monkeypatch)
        if point.startswith("patch:replaced:"):
            assert_mixed(release)
    with running(release.config) as runner:
        return runner.spool.wait(job_id, 120)


def assert_mixed(release: Release) -> None:
    """The kill really landed mid-patch: some files new, some still old or not there yet."""
    installed = [rel for rel, content in NEW_FILES.items()
                 if (release.install / rel).is_file()
                 and (release.install / rel).read_bytes() == content]
    assert 0 < len(installed) < len(NEW_FILES), installed


@pytest.mark.parametrize("points", [FORWARD_A, FORWARD_B], ids=["chain-a", "chain-b"])
def test_killed_at_every_point_the_apply_resumes_to_the_new_version(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, points: list[str]) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin",
                      migrations=[SLOW_MIGRATION, GOOD_MIGRATION])
    job = crash_through(release, points, monkeypatch)
    assert job["state"] == "done", job
    release.assert_new()
    assert len(list(site.state.backups.glob("backup_v1.0.0_*.zip"))) == 1


def test_killed_during_patch_and_rollback_the_site_ends_on_the_old_version(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin",
                      migrations=[GOOD_MIGRATION, BAD_MIGRATION])
    job = crash_through(release, BACKWARD, monkeypatch)
    assert job["state"] == "failed", job
    assert "0101_broken.sql" in job["error"]
    release.assert_old()


def test_killed_while_unpacking_ahead_and_while_taking_it_over_the_apply_completes(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    spool = Spool(site.state)
    stage_id = spool.submit("stage", {"sha256": release.sha256})
    kill_at(site, "stage:unpacking", monkeypatch)
    with running(site) as runner:
        assert runner.spool.wait(stage_id, 60)["result"]["staged"] is True, "resumed"
    job = crash_through(release, AHEAD, monkeypatch)
    assert job["state"] == "done", job
    assert job["steps"][0]["result"]["unpacked_ahead"] is False, "killed while taking it over"
    release.assert_new()
    assert not list(site.state.staging.glob("pending-*"))
