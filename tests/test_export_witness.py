"""The export witness: a count in the site database that goes back in time with it.

A restored database whose transaction counter passed the admin's cursor again before
any check ran looked like nothing had happened, and the rows written after the
restore with ids below the cursor were never exported. These tests restore a real
embedded PostgreSQL from a copy of its data folder, crash between the witness and the
mark, upgrade a site from before the witness, and export with a role that cannot
write, and look at what the admin receives.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from autotel.config import Config, load_config
from autotel.db import connect, dsn_for, stop_embedded
from autotel.db.migrate import apply_in_one_transaction, migrate_site
from autotel.export import mark as mark_module
from autotel.export.cursor import ExportRequest, parse_cursor
from autotel.export.mark import (
    MARK_FILE,
    DatabaseState,
    ExportMark,
    MarkStore,
    check_at_start,
    check_database,
    reconcile,
)
from autotel.export.writer import export_readings
from autotel.resources import bundled_dir
from tests.agent_support import with_agent
from tests.export_support import (
    admin_cursor,
    insert_each,
    last_session,
    pushed,
    run_transactions_past,
    sensors,
)
from tests.push_support import archived_sensors, busy


def witness_count(config: Config) -> int:
    with connect(config) as conn:
        row = conn.execute("SELECT handed_out FROM export_witness").fetchone()
    assert row is not None
    return int(row[0])


def mark_file(config: Config) -> dict[str, object]:
    data: dict[str, object] = json.loads((config.state.root / MARK_FILE).read_text())
    return data


def copy_folder(source: Path, target: Path) -> None:
    """`cp -a`, as a plant admin backs up and restores a stopped data folder (owner kept)."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def backed_up_then_pushed(site: Config, tmp_path: Path, keys: tuple[Path, Path], *,
                          with_mark: bool) -> tuple[Path, int]:
    """Push 10 readings, back up the stopped data folder (`with_mark`: and the export mark,
    as an image of the whole PC holds it), push 20 more; return the backup and the xmax of
    the admin's cursor now."""
    insert_each(site, sensors("a", 10))
    assert pushed(site, tmp_path, keys)[0].export.records == 10
    stop_embedded(site)
    backup = site.state.root.parent / "backup"
    backup.mkdir()
    copy_folder(site.state.pgdata, backup / "pgdata")
    if with_mark:
        shutil.copy2(site.state.root / MARK_FILE, backup / MARK_FILE)
    insert_each(site, sensors("b", 20))  # starts the server again; lost by the restore
    assert pushed(site, tmp_path, keys)[0].export.records == 20
    return backup, parse_cursor(admin_cursor(tmp_path))[0].xmax


def restore(site: Config, backup: Path) -> None:
    """Put the backup back in place of the stopped data folder (and mark, if it holds one)."""
    stop_embedded(site)
    shutil.rmtree(site.state.pgdata)
    copy_folder(backup / "pgdata", site.state.pgdata)
    if (backup / MARK_FILE).exists():
        shutil.copy2(backup / MARK_FILE, site.state.root / MARK_FILE)


@pytest.fixture
def busy_embedded(embedded_site: Config) -> Config:
    return busy(embedded_site)


def test_a_restore_whose_counter_passed_the_cursor_before_any_check_loses_no_row(
    busy_embedded: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The hole: restored from an older copy of its data folder while the site runs on,
    and the collector's transactions pass the admin's cursor before the next push (no
    agent start in between). The database's own witness is behind the mark, so the push
    brings every reading, with the reset notice."""
    site = busy_embedded
    backup, high = backed_up_then_pushed(site, tmp_path, admin_keys, with_mark=False)
    restore(site, backup)
    insert_each(site, sensors("c", 15))  # the collector writes on at once
    with connect(site) as conn:
        row = conn.execute("SELECT max(txid)::text FROM readings WHERE sensor LIKE 'c%'").fetchone()
    assert row is not None and int(row[0]) < high  # ids the admin's cursor claims to have seen
    run_transactions_past(site, high)  # a day of collecting, no check in between
    insert_each(site, sensors("d", 5))
    result, notices = pushed(site, tmp_path, admin_keys)

    archived = archived_sensors(tmp_path / "data")
    missing = sorted(set(sensors("c", 15) + sensors("d", 5)) - set(archived))
    assert missing == [], "readings inserted after the restore were skipped"
    assert result.export.records == 30  # every reading the restored database has
    assert len(notices) == 1 and "restored" in notices[0]
    assert "restored" in str(last_session(site)["reset"])
    again, notices = pushed(site, tmp_path, admin_keys)
    assert (again.export.records, notices) == (0, [])


def test_a_disk_image_restore_that_takes_the_mark_back_too_loses_no_row(
    busy_embedded: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A restored image of the whole PC: the database and the state folder with its mark
    go back together, so the site has forgotten the cursors it handed out since. The
    admin's cursor has not: it carries the witness's count, which the database is now
    below; every reading arrives, with the reset notice, and the next push is normal."""
    site = busy_embedded
    image, high = backed_up_then_pushed(site, tmp_path, admin_keys, with_mark=True)
    restore(site, image)
    insert_each(site, sensors("c", 15))
    run_transactions_past(site, high)  # days of collecting before the next push
    insert_each(site, sensors("d", 5))
    result, notices = pushed(site, tmp_path, admin_keys)

    missing = sorted(set(sensors("c", 15) + sensors("d", 5)) - set(archived_sensors(tmp_path / "data")))
    assert missing == [], "readings inserted after the restore were skipped"
    assert result.export.records == 30
    assert len(notices) == 1 and "restored" in notices[0]
    assert "restored" in str(last_session(site)["reset"])
    again, notices = pushed(site, tmp_path, admin_keys)
    assert (again.export.records, notices) == (0, [])


def test_a_crash_between_the_witness_and_the_mark_costs_nothing(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database counted a cursor that never went out (the mark file could not be
    written: a power cut, a full disk). The database is then ahead of the mark: the
    next push is a normal one, with every new reading exactly once and no reset."""
    site = busy(migrated_site)
    insert_each(site, sensors("a", 5))
    assert pushed(site, tmp_path, admin_keys)[0].export.records == 5
    insert_each(site, sensors("b", 3))
    archives = sorted(site.state.exports.iterdir())

    def crash(path: Path, data: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mark_module, "atomic_write_json", crash)
    with pytest.raises(OSError, match="No space"):
        export_readings(dsn_for(site), site.state.exports, ExportRequest(),
                        marks=MarkStore(site.state.root))
    monkeypatch.undo()
    assert sorted(site.state.exports.iterdir()) == archives  # no archive, so no cursor went out
    assert witness_count(site) == mark_file(site)["witness"] + 1  # type: ignore[operator]

    result, notices = pushed(site, tmp_path, admin_keys)
    assert (result.export.records, notices) == (3, [])
    assert "reset" not in last_session(site)
    assert archived_sensors(tmp_path / "data") == sensors("a", 5) + sensors("b", 3)
    assert witness_count(site) == mark_file(site)["witness"]  # level again


def test_an_upgraded_site_gets_no_false_reset(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A site from before the witness: its mark file has no count and its database no
    table. Pushes go on, the upgrade's migration adds the table, and the next pushes
    bring the new readings only, with no reset; from then on the cursors are counted."""
    readings = (bundled_dir("migrations") / "0001_readings.sql").read_bytes()
    with connect(site, autocommit=True) as conn:
        apply_in_one_transaction(conn, [("0001_readings.sql", readings)])
    site = with_agent(site, auth_per_minute=1000, challenge_per_minute=1000)
    insert_each(site, sensors("a", 4))
    assert pushed(site, tmp_path, admin_keys)[0].export.records == 4
    old = {k: v for k, v in mark_file(site).items() if k != "witness"}  # as the old version wrote
    (site.state.root / MARK_FILE).write_text(json.dumps(old))

    assert migrate_site(site) == ["0002_export_witness.sql"]
    insert_each(site, sensors("b", 6))
    result, notices = pushed(site, tmp_path, admin_keys)
    assert (result.export.records, notices) == (6, [])
    assert "reset" not in last_session(site)
    again, notices = pushed(site, tmp_path, admin_keys)
    assert (again.export.records, notices) == (0, [])
    assert archived_sensors(tmp_path / "data") == sensors("a", 4) + sensors("b", 6)
    assert witness_count(site) == mark_file(site)["witness"] == 2


@pytest.fixture
def limited_role(migrated_site: Config, pg_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A login role that may read `readings`, and `export_witness` with what the test's
    parameter grants (nothing, or SELECT only), but never write it: its DSN."""
    role = "reader_" + secrets.token_hex(4)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT SELECT ON readings TO {role}")
        if request.param:
            admin.execute(f"GRANT {request.param} ON export_witness TO {role}")
    try:
        yield make_conninfo(pg_dsn, user=role)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("limited_role", ["", "SELECT"], indirect=True)
def test_a_role_that_cannot_write_the_witness_still_exports_with_a_warning(
    migrated_site: Config, limited_role: str, admin_keys: tuple[Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Decided: degrade, not refuse. A site whose role may only read (a DBA's choice)
    exported before the witness existed; refusing now would stop every push over a hole
    it always had. So every reading still arrives exactly once, with no false reset,
    and the site's log says at start what is missing and how to fix it."""
    monkeypatch.setenv("AUTOTEL_DATABASE__DSN", limited_role)  # the runner's worker reads it too
    site = with_agent(load_config(migrated_site.config_path), auth_per_minute=1000,
                      challenge_per_minute=1000)
    owner = migrated_site
    insert_each(owner, sensors("a", 4))
    assert pushed(site, tmp_path, admin_keys)[0].export.records == 4
    insert_each(owner, sensors("b", 2))
    result, notices = pushed(site, tmp_path, admin_keys)
    assert (result.export.records, notices) == (2, [])
    assert archived_sensors(tmp_path / "data") == sensors("a", 4) + sensors("b", 2)

    with caplog.at_level(logging.WARNING, logger="autotel.export"):
        check_at_start(site)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unwitnessed" in warnings[0]
    assert "GRANT" in warnings[0].upper() and "export_witness" in warnings[0]
    assert witness_count(owner) == 0  # nothing was counted, so nothing can look restored


@pytest.mark.parametrize(
    ("mark_count", "db_count", "went_back"),
    [(3, 2, True), (3, 0, True), (3, 3, False), (3, 5, False), (3, None, False), (0, 0, False)],
)
def test_reconcile_compares_the_witness(
    mark_count: int, db_count: int | None, went_back: bool
) -> None:
    """Below the mark (a missing table counts 0): went back. Equal or ahead (a crash
    after the database counted): nothing happened. Unknown (no privilege): not judged."""
    mark = ExportMark("42", 7, 900, witness=mark_count)
    result = reconcile(mark, DatabaseState("42", 950, db_count), fresh_epoch=1)
    assert bool(result.problem) == went_back
    if went_back:
        assert "witness" in result.problem and result.mark.epoch == 8
        assert result.mark.witness == db_count
    else:
        assert result.mark == mark


def test_the_went_back_log_line_says_what_happened_and_what_follows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MarkStore(tmp_path)
    store.save(ExportMark("42", 7, 900, witness=3))
    with caplog.at_level(logging.ERROR, logger="autotel.export"):
        assert check_database(store, DatabaseState("42", 950, 2)).epoch == 8
    (line,) = [r.getMessage() for r in caplog.records]
    assert "went back in time" in line and "restored" in line
    assert "every reading again" in line


@pytest.mark.parametrize(
    ("data", "witness"),
    [({"system": "42", "epoch": 7, "xmax": 900}, 0), ({"system": "42", "epoch": 7, "xmax": 9,
                                                       "witness": 4}, 4)],
)
def test_a_mark_without_the_witness_reads_as_zero(data: dict[str, object], witness: int) -> None:
    assert ExportMark.from_json(data).witness == witness


@pytest.mark.parametrize("bad", [-1, "3", True, 1.5])
def test_a_damaged_witness_count_is_damage(bad: object) -> None:
    with pytest.raises(ValueError, match="witness"):
        ExportMark.from_json({"system": "42", "epoch": 7, "xmax": 900, "witness": bad})
