"""The apply's file work on a real disk: backup and restore, and a tampered work folder."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from autotel.apply.backup import check_backup, restore, write_backup
from autotel.apply.install import install_files
from autotel.apply.plan import make_plan
from autotel.apply.targets import InstallDir
from autotel.apply.workdir import WorkDir
from autotel.config import Config
from autotel.errors import DiskSpaceError, StateError
from autotel.fsutil import SHARING_RETRY_S
from autotel.package.manifest import FileEntry
from autotel.state import StatePaths
from autotel.steps import load_steps
from autotel.steps.context import StepContext
from autotel.steps.verify import verify
from tests.apply_support import NEW_FILES, FullDisk, prepare, run_step


@pytest.fixture
def install(tmp_path: Path) -> InstallDir:
    root = tmp_path / "site"
    (root / "app").mkdir(parents=True)
    (root / "app/main.py").write_bytes(b"old main\n")
    (root / "app/big.bin").write_bytes(bytes(range(256)) * 8192)
    return InstallDir(root, ("config.txt",), (root / "state",))


def test_restore_puts_back_what_changed_and_is_idempotent(install: InstallDir,
                                                          tmp_path: Path) -> None:
    plan = make_plan(["app/main.py", "app/big.bin", "new/dir/added.py"], install.kind_of)
    backup = tmp_path / "backup.zip"
    write_backup(backup, install, plan, "1.0.0", "1.1.0", ["0002_x.sql"])
    with zipfile.ZipFile(backup) as archive:
        assert archive.testzip() is None
        assert json.loads(archive.read("backup.json"))["created_dirs"] == ["new", "new/dir"]
        assert archive.read("files/app/big.bin") == bytes(range(256)) * 8192
    (install.root / "app/main.py").write_bytes(b"new main\n")
    (install.root / "new/dir").mkdir(parents=True)
    (install.root / "new/dir/added.py").write_bytes(b"added\n")
    (install.root / "new/site-note.txt").write_bytes(b"the site's own file\n")

    index = check_backup(backup)
    restored, removed = restore(backup, index, install)
    assert (restored, removed) == (1, 1) and index.new_migrations == ("0002_x.sql",)
    assert (install.root / "app/main.py").read_bytes() == b"old main\n"
    assert not (install.root / "new/dir").exists()
    assert (install.root / "new/site-note.txt").exists(), "a folder the site uses is kept"
    assert restore(backup, index, install) == (0, 0)


def test_a_damaged_backup_is_refused_whole(install: InstallDir, tmp_path: Path) -> None:
    plan = make_plan(["app/main.py", "app/big.bin"], install.kind_of)
    backup = tmp_path / "backup.zip"
    write_backup(backup, install, plan, "1.0.0", "1.1.0", [])
    data = bytearray(backup.read_bytes())
    at = data.index(bytes(range(256))) + 1000  # a byte inside big.bin, as a bad disk block would
    data[at] ^= 0xFF
    backup.write_bytes(bytes(data))
    with pytest.raises(StateError, match="app/big.bin does not match its CRC-32"):
        check_backup(backup)


def test_a_file_neither_staged_nor_installed_stops_the_patch(install: InstallDir,
                                                             tmp_path: Path) -> None:
    work = WorkDir.of(StatePaths(tmp_path / "state"), "job1")
    entry = FileEntry(path="app/main.py", sha256="0" * 64, size=9)
    with pytest.raises(StateError, match="neither staged"):
        install_files([entry], install, work, lambda done, total: None)
    assert (install.root / "app/main.py").read_bytes() == b"old main\n"


def test_a_full_disk_stops_verify_before_anything_is_written(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    before = release.install_state()
    monkeypatch.setattr("autotel.apply.unpack.shutil.disk_usage", FullDisk())
    with pytest.raises(DiskSpaceError, match="not enough free disk space for this update"):
        run_step(site, "verify", verify, release.sha256)
    assert not [p for p in site.state.staging.rglob("*") if p.is_file()], "nothing unpacked"
    assert release.install_state() == before


class WindowsRunningProgram:
    """A fake for what is outside the product: Windows refusing to replace the file a
    running program was started from, while still letting that file be renamed away
    (`rename_refused` also refuses that, as when a program holds it open without
    sharing). It stands in for `os.replace`, and for `autotel.fsutil.replace`, which on
    Windows retries a refusal for SHARING_RETRY_S: `waited_s` adds up that time instead
    of spending it."""

    def __init__(self, running: Path, rename_refused: bool = False) -> None:
        self.running = running
        self.rename_refused = rename_refused
        self.real_replace = os.replace
        self.waited_s = 0.0

    def os_replace(self, source: str | Path, target: str | Path) -> None:
        if Path(target) == self.running and self.running.exists():
            raise PermissionError(13, "Access is denied", str(target))
        if self.rename_refused and Path(source) == self.running:
            raise PermissionError(13, "The process cannot access the file because it is "
                                  "being used by another process", str(source))
        self.real_replace(source, target)

    def retrying_replace(self, source: Path, target: Path) -> None:
        try:
            self.os_replace(source, target)
        except PermissionError:
            self.waited_s += SHARING_RETRY_S
            raise

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("autotel.apply.install.os.replace", self.os_replace)
        monkeypatch.setattr("autotel.apply.install.replace", self.retrying_replace)


def run_steps(site: Config, job: dict[str, Any], names: list[str]) -> None:
    for name in names:
        result = load_steps()[name](StepContext(site, job, name, lambda *args: None))
        job["steps"].append({"name": name, "state": "done", "result": result})


def test_a_program_windows_will_not_replace_while_it_runs_is_moved_aside_and_replaced(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    running = site.install_path / "bin/run.sh"
    windows = WindowsRunningProgram(running)
    windows.install(monkeypatch)
    job = {"id": "job1", "kind": "apply", "params": {"sha256": release.sha256}, "steps": []}
    run_steps(site, job, ["verify", "backup", "patch", "migrate", "restart"])
    release.assert_new()
    assert running.read_bytes() == NEW_FILES["bin/run.sh"]
    assert windows.waited_s == 0, "moved aside at the first refusal, not after the retries"


def test_a_program_that_cannot_even_be_moved_aside_stops_the_patch_and_is_rolled_back(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    windows = WindowsRunningProgram(site.install_path / "bin/run.sh", rename_refused=True)
    windows.install(monkeypatch)
    job = {"id": "job1", "kind": "apply", "params": {"sha256": release.sha256}, "steps": []}
    run_steps(site, job, ["verify", "backup"])
    with pytest.raises(StateError, match="bin/run.sh cannot be replaced .*stop that program"):
        run_steps(site, job, ["patch"])
    assert windows.waited_s == SHARING_RETRY_S, "a reader holding it gets the retries"
    run_steps(site, job, ["rollback"])
    release.assert_old()
