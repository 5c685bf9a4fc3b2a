"""The apply's pure decisions and its last line of defence on paths, with plain values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from autotel.apply.plan import (
    ApplyPlan,
    Kind,
    backup_name,
    backups_to_prune,
    make_plan,
    progress_steps,
    space_problem,
)
from autotel.apply.targets import InstallDir
from autotel.config import Config
from autotel.errors import PackageError

KINDS: dict[str, Kind] = {"app": "dir", "app/main.py": "file", "app/lib": "dir", "bin": "dir",
         "bin/tool": "file", "link": "special"}


def kind_of(rel: str) -> Kind:
    return KINDS.get(rel)


def test_plan_splits_replaced_and_created_and_lists_new_folders_parents_first() -> None:
    paths = ["app/main.py", "app/lib/new.py", "plugins/a/b/c.py", "plugins/a/d.py"]
    plan = make_plan(paths, kind_of)
    assert plan == ApplyPlan(replaced=("app/main.py",),
                             created=("app/lib/new.py", "plugins/a/b/c.py", "plugins/a/d.py"),
                             created_dirs=("plugins", "plugins/a", "plugins/a/b"))


@pytest.mark.parametrize("path, words", [
    ("app", "where the install directory has a folder"),
    ("link", "link or special file"),
    ("bin/tool/x.py", "bin/tool is a file in the install directory, not a folder"),
])
def test_plan_refuses_a_file_where_something_else_is(path: str, words: str) -> None:
    with pytest.raises(PackageError, match=words):
        make_plan([path], kind_of)


def test_backup_names_carry_the_old_version_and_never_collide() -> None:
    moment = datetime(2026, 2, 22, 10, 15, 0, tzinfo=UTC)
    first = backup_name("1.1.0", moment, set())
    assert first == "backup_v1.1.0_20260222-101500.zip"
    assert backup_name("1.1.0", moment, {first}) == "backup_v1.1.0_20260222-101500_2.zip"


def test_pruning_keeps_the_newest_by_time_and_ignores_other_files() -> None:
    names = ["backup_v1.0.0_20260101-000000.zip", "backup_v1.2.0_20260301-000000.zip",
             "backup_v1.1.0_20260201-000000.zip", "backup_v1.1.0_20260201-000000_2.zip",
             "notes.txt", "backup_v1.0.0_garbage.zip"]
    assert backups_to_prune(names, 2) == ["backup_v1.1.0_20260201-000000.zip",
                                          "backup_v1.0.0_20260101-000000.zip"]
    assert backups_to_prune(names, 10) == []


def test_progress_is_reported_about_ten_times_per_phase() -> None:
    assert progress_steps(1000) == 100 and progress_steps(3) == 1


@pytest.fixture
def install(bare_site: Config) -> InstallDir:
    return InstallDir.of(bare_site)


@pytest.mark.parametrize("rel", ["license.dat", "LICENSE.DAT", "License/__init__.py",
                                 "keys/admin.pem", "autotel.yaml", "state/version.txt",
                                 "credentials.env"])
def test_protected_files_are_refused_again_at_apply_time(install: InstallDir, rel: str) -> None:
    with pytest.raises(PackageError, match="protected"):
        install.target(rel)


@pytest.mark.parametrize("rel", ["../outside.py", "/etc/passwd", "a/../../x", "C:/x", "a\\b"])
def test_unsafe_paths_are_refused(install: InstallDir, rel: str) -> None:
    with pytest.raises(PackageError):
        install.target(rel)


def test_a_symlinked_folder_cannot_lead_outside(install: InstallDir, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (install.root / "plugins").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PackageError, match="outside the install directory"):
        install.target("plugins/evil.py")


def test_a_state_directory_under_another_name_is_still_off_limits(bare_site: Config) -> None:
    moved = bare_site.model_copy(update={"state_dir": Path("var/autotel")})
    with pytest.raises(PackageError, match="belongs to autotel"):
        InstallDir.of(moved).target("var/autotel/version.txt")
    allowed = InstallDir.of(moved).target("var/other.txt")
    assert allowed == moved.install_path.resolve() / "var/other.txt"


def test_an_apply_that_would_fill_the_disk_is_refused_up_front() -> None:
    assert space_problem(10**10, 50_000_000, 50_000_000) is None
    problem = space_problem(120_000_000, 50_000_000, 50_000_000)
    assert problem is not None and "needs 150 MB" in problem and "120 MB is free" in problem
