"""The apply job failing: the site stays wholly on the old version and says why."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from autotel.apply.faults import FAIL_ENV
from autotel.config import Config
from tests.apply_support import (
    BAD_MIGRATION,
    GOOD_MIGRATION,
    NEW_FILES,
    Release,
    prepare,
    publish,
    receive,
)
from tests.foundation_support import events_of, running
from tests.watchdog_support import run_cli


def apply(release: Release, **params: Any) -> dict[str, Any]:
    with running(release.config) as runner:
        return runner.run("apply", timeout=120, **({"sha256": release.sha256} | params))


def failed_event(config: Config, job: dict[str, Any]) -> dict[str, Any]:
    events = [e for e in events_of(config, job["id"]) if e["step"] == "failed"]
    assert len(events) == 1
    return events[0]


def test_a_failing_migration_puts_everything_back(site: Config, admin_keys: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin",
                      migrations=[GOOD_MIGRATION, BAD_MIGRATION])
    job = apply(release)
    assert job["state"] == "failed"
    release.assert_old()
    assert not site.state.restart_flag.exists()
    steps = {s["name"]: s["state"] for s in job["steps"]}
    assert steps == {"verify": "done", "backup": "done", "patch": "done", "migrate": "failed",
                     "restart": "pending", "rollback": "done"}
    assert job["result"]["rolled_back"] is True and job["result"]["installed_version"] == "1.0.0"
    assert job["result"]["files_restored"] == 3 and job["result"]["files_removed"] == 2
    reason = failed_event(site, job)["msg"]
    assert "0101_broken.sql" in reason and "no_such_column" in reason
    assert "Traceback" not in reason
    assert list(site.state.backups.glob("backup_v1.0.0_*.zip")), "the backup is kept"
    status = run_cli("status", config=site).stdout  # what the admin sees on the site
    assert "installed version: 1.0.0" in status
    assert re.search(rf"^{job['id']}\s+apply\s+failed\s+rolled back, v1.0.0 runs; step migrate",
                     status, re.MULTILINE), status


def test_the_operator_can_retry_after_a_failure(site: Config, admin_keys: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin", migrations=[BAD_MIGRATION])
    with running(site) as runner:
        first = runner.run("apply", timeout=120, sha256=release.sha256)
        second = runner.run("apply", timeout=120, sha256=release.sha256)
    assert first["state"] == second["state"] == "failed"
    assert second["steps"][0]["result"]["unpacked_ahead"] is True, "unpacked again after the rollback"
    release.assert_old()


def test_a_package_altered_after_receipt_is_refused_untouched(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    before = release.install_state()
    pending = next(site.state.pending.glob("update_v*.zip"))
    with zipfile.ZipFile(pending, "a") as archive:  # a file slipped in after the check
        archive.writestr("files/app/evil.py", b"import os\n")
    job = apply(release)
    assert job["state"] == "failed"
    assert [s["name"] for s in job["steps"] if s["state"] == "done"] == ["rollback"]
    assert release.install_state() == before
    assert not list(site.state.backups.iterdir())
    assert "altered" in failed_event(site, job)["msg"]
    assert site.state.installed_version() == "1.0.0"


def test_a_file_changed_inside_the_stored_package_stops_the_apply_untouched(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    """The files are hashed as `verify` unpacks them: a changed one is caught there."""
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    before = release.install_state()
    pending = next(site.state.pending.glob("update_v*.zip"))
    swap_bytes(pending, "files/app/main.py")
    job = apply(release)
    assert job["state"] == "failed"
    assert [s["name"] for s in job["steps"] if s["state"] == "done"] == ["rollback"]
    assert release.install_state() == before
    assert not list(site.state.backups.iterdir())
    assert not list(site.state.staging.glob("apply-*")), "the unpacked files are discarded"
    assert "files/app/main.py sha256 mismatch" in failed_event(site, job)["msg"]


def swap_bytes(package: Path, name: str) -> None:
    """Rewrite `package` with `name` holding other bytes of the same length."""
    with zipfile.ZipFile(package) as old:
        members = [(info, old.read(info)) for info in old.infolist()]
    with zipfile.ZipFile(package, "w") as new:
        for info, data in members:
            new.writestr(info, bytes(b ^ 1 for b in data) if info.filename == name else data)


def test_a_package_other_than_the_confirmed_one_is_refused(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    before = release.install_state()
    job = apply(release, sha256="0" * 64)
    assert job["state"] == "failed" and job["steps"][0]["state"] == "failed"
    assert "not the one that was confirmed" in failed_event(site, job)["msg"]
    assert release.install_state() == before
    release.assert_old()


@pytest.mark.parametrize("params", [{"sha256": ""}, {"sha256": "abc"}])
def test_an_apply_without_a_confirmed_sha256_is_refused(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        params: dict[str, str]) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    with running(site) as runner:
        job = runner.run("apply", timeout=120, **params)
    assert job["state"] == "failed" and "params.sha256" in job["error"]
    release.assert_old()


def test_apply_with_nothing_pending_fails_clearly(site: Config, admin_keys: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    (site.state.pending / "meta.json").unlink()
    job = apply(release)
    assert job["state"] == "failed" and "no update is waiting" in job["error"]


def test_a_newer_pending_package_is_not_applied_in_place_of_the_confirmed_one(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    newer = publish(tmp_path / "admin2", admin_keys[0], NEW_FILES, [], version="1.2.0")
    receive(site, newer)
    job = apply(release)
    assert job["state"] == "failed" and "not the one that was confirmed" in job["error"]
    assert site.state.installed_version() == "1.0.0"


def test_a_failure_after_the_migrations_committed_completes_the_update(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Old files would not fit the migrated database, so rollback finishes the install instead."""
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    monkeypatch.setenv(FAIL_ENV, "restart:start")
    job = apply(release)
    assert job["state"] == "failed" and "restart:start" in job["error"]
    assert job["result"]["rolled_back"] is False
    assert job["result"]["installed_version"] == "1.1.0"
    release.assert_new()
    assert site.state.restart_flag.exists()


def test_with_the_database_down_the_apply_stops_before_touching_files(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    text = site.config_path.read_text(encoding="utf-8")
    dsn = site.database.dsn.get_secret_value()
    site.config_path.write_text(text.replace(dsn, "postgresql://nobody@127.0.0.1:1/none"),
                                encoding="utf-8")
    before = release.install_state()
    job = apply(release)
    assert job["state"] == "failed" and "cannot connect to the site database" in job["error"]
    assert [s["state"] for s in job["steps"][:2]] == ["done", "failed"]
    assert release.install_state() == before
    assert site.state.installed_version() == "1.0.0"
