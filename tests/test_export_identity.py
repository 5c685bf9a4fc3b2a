"""A cursor only fits the database that issued it: re-created and restored databases.

The real agent and runner over TLS, the admin's real `push`, a real embedded
PostgreSQL that the tests stop, wipe, copy and put back like a plant admin would.
Before cursors named their database, each scenario here lost rows silently: the new
rows got transaction ids the old cursor claimed to have seen.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from autotel.config import Config
from autotel.db import connect, dsn_for, stop_embedded
from autotel.db.migrate import migrate_site
from autotel.export.cursor import encode_cursor, parse_cursor
from autotel.export.mark import MARK_FILE, check_at_start
from tests.export_support import (
    NOTICE,
    admin_cursor,
    insert_each,
    last_session,
    pushed,
    sensors,
    table_sensors,
)
from tests.push_support import CLIENT, archived_sensors, busy


@pytest.fixture
def busy_embedded(embedded_site: Config) -> Config:
    return busy(embedded_site)


def test_a_wiped_embedded_database_loses_no_new_row(
    busy_embedded: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The embedded data folder wiped (or a new PC with the same client id): the new
    cluster counts transactions from the same start, so its first rows fall inside the
    old cursor. All of them arrive, with the header and the admin's notice."""
    site = busy_embedded
    insert_each(site, sensors("old", 40))
    first, _ = pushed(site, tmp_path, admin_keys)
    assert first.export.records == 40

    stop_embedded(site)
    shutil.rmtree(site.state.pgdata)
    migrate_site(site)  # initdb of a new cluster, then `readings` again
    insert_each(site, sensors("new", 50))
    second, notices = pushed(site, tmp_path, admin_keys)

    assert second.export.records == 50, "rows of the new database were skipped"
    assert len(notices) == 1 and NOTICE in notices[0] and "another database" in notices[0]
    assert last_session(site)["reset"] == notices[0].split("(", 1)[1].rsplit(")", 1)[0]
    assert sorted(archived_sensors(tmp_path / "data")) == sorted(
        sensors("old", 40) + sensors("new", 50)
    )
    third, notices = pushed(site, tmp_path, admin_keys)
    assert (third.export.records, notices) == (0, [])


def test_a_restore_from_an_older_physical_backup_loses_no_new_row(
    busy_embedded: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The cluster put back from a copy of its stopped data folder: same cluster, its
    counter set back. The agent's check at start notices it, so even after the counter
    has passed the old cursor again, the next push brings every row."""
    site = busy_embedded
    insert_each(site, sensors("a", 10))
    assert pushed(site, tmp_path, admin_keys)[0].export.records == 10
    stop_embedded(site)
    backup = site.state.root.parent / "pgdata-backup"
    subprocess.run(["cp", "-a", str(site.state.pgdata), str(backup)], check=True)
    insert_each(site, sensors("b", 20))  # starts the server again; lost by the restore
    assert pushed(site, tmp_path, admin_keys)[0].export.records == 20
    high = parse_cursor(admin_cursor(tmp_path))[0].xmax

    stop_embedded(site)
    shutil.rmtree(site.state.pgdata)
    subprocess.run(["cp", "-a", str(backup), str(site.state.pgdata)], check=True)
    dsn_for(site)  # the watchdog starts the embedded database before the services,
    check_at_start(site)  # and `autotel agent` checks the mark when it starts
    insert_each(site, sensors("c", 40))
    with connect(site) as conn:
        row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
    assert row is not None and int(row[0]) > high  # the counter passed the old cursor
    result, notices = pushed(site, tmp_path, admin_keys)

    assert result.export.records == 50, "rows inserted after the restore were skipped"
    assert len(notices) == 1 and "restored" in notices[0]
    archived = archived_sensors(tmp_path / "data")
    assert set(archived) == set(sensors("a", 10) + sensors("b", 20) + sensors("c", 40))
    assert sorted(archived) == sorted(sensors("a", 10) * 2 + sensors("b", 20) + sensors("c", 40))


def test_a_v1_cursor_still_works_and_is_answered_with_one_naming_the_database(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """An admin upgraded from a version that stored v1 cursors: nothing repeats, nothing
    is lost, and the cursor it gets back names the database."""
    site = busy(migrated_site)
    insert_each(site, sensors("a", 5))
    assert pushed(site, tmp_path, admin_keys)[0].export.records == 5
    cursor_file = tmp_path / "data" / CLIENT / "cursor.json"
    state = json.loads(cursor_file.read_text())
    assert state["cursor"].startswith("v3.")
    state["cursor"] = encode_cursor(parse_cursor(state["cursor"])[0])  # as an older agent wrote
    cursor_file.write_text(json.dumps(state))
    (site.state.root / MARK_FILE).unlink()  # the upgrade: no mark yet
    insert_each(site, sensors("b", 7))

    result, notices = pushed(site, tmp_path, admin_keys)
    assert (result.export.records, notices) == (7, [])
    assert admin_cursor(tmp_path).startswith("v3.")
    assert sorted(archived_sensors(tmp_path / "data")) == sensors("a", 5) + sensors("b", 7)
    assert "reset" not in last_session(site)


@pytest.mark.parametrize("damage", [b"{\"system\": ", b"\xff\xfe[]"])
def test_a_damaged_mark_is_rebuilt_and_the_export_goes_on(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, damage: bytes
) -> None:
    """The site cannot tell any more whether its database was restored, so the next
    push gets every row (some again), says why, and the one after is normal."""
    site = busy(migrated_site)
    insert_each(site, sensors("a", 3))
    assert pushed(site, tmp_path, admin_keys)[0].export.records == 3
    (site.state.root / MARK_FILE).write_bytes(damage)
    insert_each(site, sensors("b", 2))

    result, notices = pushed(site, tmp_path, admin_keys)
    assert result.export.records == 5 and len(notices) == 1 and "epoch" in notices[0]
    assert json.loads((site.state.root / MARK_FILE).read_text())["system"]
    assert table_sensors(site) == sorted(set(archived_sensors(tmp_path / "data")))
    again, notices = pushed(site, tmp_path, admin_keys)
    assert (again.export.records, notices) == (0, [])
