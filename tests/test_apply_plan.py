"""The apply's pure decisions and its last line of defence on paths, with plain values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from autotel.apply.pathroom import check_fits
from autotel.apply.plan import (
    ApplyPlan,
    Kind,
    backup_name,
    backups_to_prune,
    make_plan,
    space_problem,
    thinned,
)
from autotel.apply.targets import InstallDir
from autotel.config import Config
from autotel.errors import PackageError
from autotel.state import StatePaths

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


def test_progress_is_reported_about_ten_times_per_phase_and_at_its_end() -> None:
    seen: list[tuple[int, int]] = []
    report = thinned(lambda done, total: seen.append((done, total)))
    for total in (1000, 3):
        for done in range(1, total + 1):
            report(done, total)
    assert [d for d, t in seen if t == 1000] == list(range(100, 1001, 100))
    assert [d for d, t in seen if t == 3] == [1, 2, 3]


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


def test_plan_on_disk_takes_each_kind_from_the_check_and_matches_kind_of(
        install: InstallDir) -> None:
    (install.root / "app" / "lib").mkdir(parents=True)
    (install.root / "app" / "main.py").write_text("old")
    paths = ["app/main.py", "./app//lib/new.py", "plugins/a/b.py", "plugins/a/c.py"]
    plan = install.plan(paths)
    assert plan == ApplyPlan(replaced=("app/main.py",),
                             created=("./app//lib/new.py", "plugins/a/b.py", "plugins/a/c.py"),
                             created_dirs=("plugins", "plugins/a"))
    assert plan == make_plan(paths, install.kind_of)
    assert install.targets(paths) == [install.target(rel) for rel in paths]


@pytest.mark.parametrize("rel, words", [
    ("bin/tool/x.py", "bin/tool is a file in the install directory, not a folder"),
    ("bin", "where the install directory has a folder"),
    ("bin/inner", "link or special file"),
])
def test_plan_on_disk_refuses_a_file_where_something_else_is(install: InstallDir, rel: str,
                                                              words: str) -> None:
    (install.root / "bin").mkdir()
    (install.root / "bin" / "tool").write_text("a file, not a folder")
    (install.root / "bin" / "inner").symlink_to(install.root / "bin" / "tool")
    with pytest.raises(PackageError, match=words):
        install.plan(["app/ok.py", rel])


@pytest.mark.parametrize("rel", ["plugins/evil.py", "link.py"])
def test_links_out_are_refused_by_every_pass_even_after_a_folder_was_cached(
        install: InstallDir, tmp_path: Path, rel: str) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "link.py").write_text("outside")
    (install.root / "plugins").symlink_to(outside, target_is_directory=True)
    (install.root / "link.py").symlink_to(outside / "link.py")
    paths = ["app/a.py", "app/b.py", rel]
    for check in (install.targets, install.plan, lambda paths: install.target(paths[-1])):
        with pytest.raises(PackageError, match="outside the install directory"):
            check(paths)


def test_a_loop_of_links_is_refused(install: InstallDir) -> None:
    (install.root / "loop").symlink_to(install.root / "loop")
    for rel in ("loop", "loop/x.py"):
        with pytest.raises(PackageError, match="loop of symbolic links"):
            install.plan([rel])


def test_a_path_fits_a_site_only_if_the_apply_can_write_it_everywhere(tmp_path: Path) -> None:
    """As on Windows without long paths (259): the work folder under the state directory
    is deeper than the install directory, so it decides."""
    state = StatePaths(tmp_path / "site" / "state")
    work = state.staging / ("apply-" + "x" * 64) / "replaced"
    limit = len(str(work)) + 1 + 40
    check_fits(state, tmp_path / "site", ["a" * 40, "b/" + "c" * 38], "p.zip", limit=limit)
    with pytest.raises(PackageError, match=r"'d{41}' would need a path of \d+ characters on this "
                                           rf"site, more than the {limit} its system allows"):
        check_fits(state, tmp_path / "site", ["a", "d" * 41], "p.zip", limit=limit)
