"""The apply job through a real `autotel runner`: the whole update, and what it leaves."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from autotel.config import Config
from tests.apply_support import CREATED, NEW_VERSION, OLD_FILES, OLD_VERSION, prepare, step_events
from tests.foundation_support import events_of, running

STEPS = ["verify", "backup", "patch", "migrate", "restart", "done"]


def test_apply_installs_the_update_and_says_so(site: Config, admin_keys: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    with running(site) as runner:
        job = runner.run("apply", timeout=120, sha256=release.sha256)
    assert job["state"] == "done", job
    release.assert_new()
    flag = json.loads(site.state.restart_flag.read_text(encoding="utf-8"))
    assert flag["version"] == NEW_VERSION and flag["job"] == job["id"]
    assert job["result"]["installed_version"] == NEW_VERSION
    assert job["result"]["migrations_applied"] == ["0100_apply_test.sql"]

    events = events_of(site, job["id"])
    assert step_events(events) == STEPS
    pcts = [e["pct"] for e in events]
    assert pcts == sorted(pcts) and pcts[-1] == 100
    starts = {e["step"]: e for e in events if e.get("msg_en", "").endswith("...")}
    assert starts["verify"]["msg"] == "Перевірка пакету..."
    assert starts["backup"]["msg"] == "Резервна копія..."
    assert starts["patch"]["msg"] == "Застосування файлів..."
    assert starts["migrate"]["msg"] == "Міграція БД..."
    assert starts["restart"]["msg"] == "Перезапуск..."
    assert (events[-1]["msg"], events[-1]["msg_en"]) == ("Перезапуск...", "Restarting..."), \
        "the seed's last event: done, restarting"


def test_a_dropped_kind_apply_alone_installs_the_waiting_update(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    """DESIGN.md: the minimum a person may drop is {"kind": "apply"}."""
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    with running(site) as runner:
        job = runner.run_dropped("apply", timeout=120)
    assert job["state"] == "done", job
    assert job["steps"][0]["result"]["sha256"] == release.sha256
    release.assert_new()


def test_backup_holds_the_replaced_files_and_lists_the_created(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    with running(site) as runner:
        job = runner.run("apply", timeout=120, sha256=release.sha256)
    backups = list(site.state.backups.glob(f"backup_v{OLD_VERSION}_*.zip"))
    assert [Path(job["result"]["backup"])] == backups
    with zipfile.ZipFile(backups[0]) as archive:
        index = json.loads(archive.read("backup.json"))
        for rel in ("app/main.py", "app/lib/util.py", "bin/run.sh"):
            assert archive.read("files/" + rel) == OLD_FILES[rel]
        assert (archive.getinfo("files/bin/run.sh").external_attr >> 16) & 0o777 == 0o755
    assert sorted(index["created"]) == sorted(CREATED)
    assert index["from_version"] == OLD_VERSION and index["to_version"] == NEW_VERSION
    assert index["new_migrations"] == ["0100_apply_test.sql"]


def test_only_the_newest_backups_are_kept(site: Config, admin_keys: tuple[Path, Path],
                                          tmp_path: Path) -> None:
    older = [f"backup_v0.9.{n}_2026010{n}-120000.zip" for n in range(1, 7)]
    site.state.backups.mkdir(parents=True, exist_ok=True)
    for name in older:
        (site.state.backups / name).write_bytes(b"old backup")
    (site.state.backups / "notes.txt").write_text("not a backup")
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    with running(site) as runner:
        job = runner.run("apply", timeout=120, sha256=release.sha256)
    kept = sorted(p.name for p in site.state.backups.iterdir())
    assert len([k for k in kept if k.startswith("backup_")]) == site.keep_backups == 5
    assert Path(job["result"]["backup"]).name in kept
    assert "notes.txt" in kept and older[-1] in kept and older[0] not in kept
