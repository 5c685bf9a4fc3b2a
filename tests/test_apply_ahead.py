"""An update unpacked ahead while it waits for the operator (the `stage` job), and the
apply that takes those files over, or unpacks the package itself when they changed."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from autotel.apply.plan import SPACE_MARGIN
from autotel.apply.workdir import WorkDir
from autotel.config import Config
from autotel.errors import DiskSpaceError
from autotel.package.pending import read_pending
from autotel.steps.stage import stage_ahead
from autotel.steps.verify import verify
from tests.apply_support import (
    NEW_FILES,
    OLD_FILES,
    FullDisk,
    Release,
    prepare,
    publish,
    receive,
    run_step,
)
from tests.foundation_support import RunnerProcess, running


def unpack_ahead(runner: RunnerProcess, sha256: str) -> dict[str, Any]:
    job = runner.run("stage", timeout=60, sha256=sha256)
    assert job["state"] == "done", job
    return dict(job["steps"][0]["result"])


def apply(runner: RunnerProcess, release: Release) -> dict[str, Any]:
    job = runner.run("apply", timeout=120, sha256=release.sha256)
    assert job["state"] == "done", job
    return job


def ahead_folders(site: Config) -> list[str]:
    return sorted(p.name for p in site.state.staging.glob("pending-*"))


def test_the_apply_takes_over_the_files_unpacked_ahead(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    before = release.install_state()
    folder = WorkDir.of_pending(site.state, release.sha256)
    with running(site) as runner:
        assert unpack_ahead(runner, release.sha256)["staged"] is True
        assert folder.phase() == "staged"
        assert {rel: (folder.files / rel).read_bytes() for rel in NEW_FILES} == NEW_FILES
        assert os.access(folder.files / "bin/run.sh", os.X_OK), "the mode of the file it replaces"
        assert release.install_state() == before, "nothing installed before the confirmation"
        job = apply(runner, release)
    assert job["steps"][0]["result"]["unpacked_ahead"] is True
    release.assert_new()
    assert ahead_folders(site) == []


CHANGES = ["a file altered", "a file removed", "left half-unpacked", "a file added",
           "a link in place of a file", "a folder linked elsewhere", "a second link kept"]


def change_while_waiting(folder: WorkDir, change: str, elsewhere: Path) -> None:
    """What a crash, a slip or a stranger could do to the unpacked files in days of waiting;
    the links and the added file keep every listed file's content as signed."""
    main = folder.files / "app/main.py"
    elsewhere.mkdir()
    if change == "a file altered":
        main.write_bytes(b"print('not what was signed')\n")
    elif change == "a file removed":
        (folder.files / "plugins/new/plugin.py").unlink()
    elif change == "left half-unpacked":
        folder.set_phase("staging")  # as a runner killed while unpacking leaves it
    elif change == "a file added":
        (folder.files / "app/evil.py").write_bytes(b"import os\n")
    elif change == "a link in place of a file":
        main.rename(elsewhere / "main.py")
        main.symlink_to(elsewhere / "main.py")
    elif change == "a folder linked elsewhere":
        (folder.files / "app/lib").rename(elsewhere / "lib")
        (folder.files / "app/lib").symlink_to(elsewhere / "lib", target_is_directory=True)
    else:
        os.link(main, elsewhere / "main.py")


@pytest.mark.parametrize("change", CHANGES)
def test_what_changed_while_waiting_is_unpacked_again_from_the_package(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, change: str) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    folder = WorkDir.of_pending(site.state, release.sha256)
    with running(site) as runner:
        unpack_ahead(runner, release.sha256)
        change_while_waiting(folder, change, tmp_path / "elsewhere")
        job = apply(runner, release)
    assert job["steps"][0]["result"]["unpacked_ahead"] is False
    release.assert_new()
    for rel in NEW_FILES:
        installed = release.install / rel
        assert not installed.is_symlink() and installed.stat().st_nlink == 1, rel
    assert not (release.install / "app/evil.py").exists()
    assert ahead_folders(site) == []


def test_a_stage_job_dropped_by_hand_unpacks_the_waiting_update(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    """As `{"kind": "apply"}` alone applies the waiting update (DESIGN.md)."""
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    with running(site) as runner:
        job = runner.run_dropped("stage")
    assert job["state"] == "done" and job["result"]["staged"] is True, job
    assert WorkDir.of_pending(site.state, release.sha256).is_staged()


def test_a_mode_changed_while_waiting_is_the_one_installed(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    with running(site) as runner:
        unpack_ahead(runner, release.sha256)
        os.chmod(release.install / "bin/run.sh", 0o750)
        job = apply(runner, release)
    assert job["steps"][0]["result"]["unpacked_ahead"] is True
    release.assert_new()
    assert stat.S_IMODE((release.install / "bin/run.sh").stat().st_mode) == 0o750


def test_a_newer_update_replaces_what_was_unpacked_for_the_older(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    with running(site) as runner:
        unpack_ahead(runner, release.sha256)
        newer = receive(site, publish(tmp_path / "newer", admin_keys[0], NEW_FILES, [],
                                      version="1.2.0"))
        assert unpack_ahead(runner, release.sha256) == {
            "staged": False, "reason": "this update is no longer waiting"}
        assert unpack_ahead(runner, newer)["staged"] is True
    assert ahead_folders(site) == [WorkDir.of_pending(site.state, newer).root.name]


def test_without_room_to_unpack_ahead_the_update_still_waits(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    monkeypatch.setattr("autotel.apply.unpack.shutil.disk_usage", FullDisk())
    result = run_step(site, "stage", stage_ahead, release.sha256)
    assert result["staged"] is False
    assert "not enough free disk space" in result["reason"]
    assert "the apply will unpack it then" in result["reason"]
    assert ahead_folders(site) == []
    pending = read_pending(site.state, verify_sha256=True)
    assert pending is not None and pending.sha256 == release.sha256


class WindowsJunction:
    """A fake for what is outside the product: Windows reporting one folder as a junction
    (a reparse point that is not a symbolic link), which Linux cannot make. It stands in
    for `os.lstat` in the apply's check of the unpacked files."""

    def __init__(self, junction: Path) -> None:
        self.junction = str(junction)
        self.real_lstat = os.lstat

    def __call__(self, path: str, **kwargs: Any) -> object:
        info = self.real_lstat(path, **kwargs)
        if str(path) != self.junction or kwargs:
            return info
        return SimpleNamespace(st_mode=info.st_mode,
                               st_file_attributes=stat.FILE_ATTRIBUTE_REPARSE_POINT)


def test_a_windows_junction_among_the_unpacked_files_is_not_trusted(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    assert run_step(site, "stage", stage_ahead, release.sha256)["staged"]
    work = WorkDir.of(site.state, "a1")
    monkeypatch.setattr("autotel.apply.install.os.lstat",
                        WindowsJunction(work.files / "app" / "lib"))
    assert run_step(site, "verify", verify, release.sha256)["unpacked_ahead"] is False
    assert (work.files / "app/lib/util.py").read_bytes() == NEW_FILES["app/lib/util.py"]
    assert ahead_folders(site) == []


def test_unpacking_again_checks_the_room_the_unpacked_files_did_not_need(
        site: Config, admin_keys: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Taken over, the unpacked files need no new room; unpacked again, they do."""
    release = prepare(site, admin_keys[0], tmp_path / "admin")
    assert run_step(site, "stage", stage_ahead, release.sha256)["staged"]
    folder = WorkDir.of_pending(site.state, release.sha256)
    (folder.files / "app/main.py").write_bytes(b"print('not what was signed')\n")
    before = release.install_state()
    backup = sum(len(OLD_FILES[rel]) for rel in NEW_FILES if rel in OLD_FILES)
    room = SPACE_MARGIN + backup + sum(map(len, NEW_FILES.values()))
    monkeypatch.setattr("autotel.apply.unpack.shutil.disk_usage", FullDisk(room - 1))
    with pytest.raises(DiskSpaceError, match="not enough free disk space"):
        run_step(site, "verify", verify, release.sha256)
    assert not [p for p in WorkDir.of(site.state, "a1").root.rglob("*") if p.is_file()
                and p.name != "journal.json"], "nothing unpacked"
    assert release.install_state() == before
