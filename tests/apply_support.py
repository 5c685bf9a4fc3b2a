"""Helpers for the apply tests: an installed v1.0.0, a received v1.1.0, and checks that
the site is wholly on one version or the other, file by file and in the database."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from autotel.config import Config
from autotel.crypto.signing import load_private_key
from autotel.db import connect
from autotel.db.migrate import applied_migrations
from autotel.package.build import PackageSpec, Source, build_package
from autotel.package.pending import read_pending, store_pending
from autotel.package.verify import verify_package
from autotel.package.zipread import file_sha256
from autotel.steps.context import StepContext
from autotel.timeutil import utcnow

OLD_VERSION, NEW_VERSION = "1.0.0", "1.1.0"
# What v1.0.0 has installed; `config.txt` is protected and never in a package.
OLD_FILES = {
    "app/main.py": b"print('version 1.0.0')\n",
    "app/lib/util.py": b"def helper():\n    return 1\n",
    "bin/run.sh": b"#!/bin/sh\necho v1\n",
    "docs/readme.txt": "Версія 1.0.0\n".encode(),
    "config.txt": b"plant=A\n",
}
# What v1.1.0 ships: three files replaced, two created (one in new folders).
NEW_FILES = {
    "app/main.py": b"print('version 1.1.0')\n",
    "app/lib/util.py": b"def helper():\n    return 2\n",
    "bin/run.sh": b"#!/bin/sh\necho v2\n",
    "app/lib/extra.py": b"EXTRA = True\n",
    "plugins/new/plugin.py": b"PLUGIN = 'new'\n",
}
CREATED = ["app/lib/extra.py", "plugins/new/plugin.py"]
CREATED_DIRS = ["plugins", "plugins/new"]
GOOD_MIGRATION = ("0100_apply_test.sql",
                  ("CREATE TABLE apply_test (id int PRIMARY KEY, note text);\n"
                   "INSERT INTO apply_test VALUES (1, 'from 1.1.0');\n"))
# Creates a table first, then fails: the table must not survive.
BAD_MIGRATION = ("0101_broken.sql",
                 "CREATE TABLE apply_broken (id int);\nSELECT no_such_column FROM apply_test;\n")


@dataclass
class Release:
    """v1.1.0 received and pending on a site that runs v1.0.0."""

    config: Config
    sha256: str
    migrations: list[str]
    tables: list[str]
    files: dict[str, bytes] = field(default_factory=lambda: dict(NEW_FILES))

    @property
    def install(self) -> Path:
        return self.config.install_path

    def assert_new(self) -> None:
        """Every file of the package installed, the rest untouched, migrated, pending cleared."""
        for rel, content in self.files.items():
            assert (self.install / rel).read_bytes() == content, rel
        assert (self.install / "config.txt").read_bytes() == OLD_FILES["config.txt"]
        assert _is_executable(self.install / "bin/run.sh")
        assert self.config.state.installed_version() == NEW_VERSION
        assert read_pending(self.config.state) is None
        applied, tables = self.database()
        assert set(self.migrations) <= set(applied)
        assert set(self.tables) <= tables
        assert not list(self.config.state.staging.glob("apply-*"))

    def assert_old(self) -> None:
        """Every file as v1.0.0 had it, nothing created, no migration, the package still pending."""
        for rel, content in OLD_FILES.items():
            assert (self.install / rel).read_bytes() == content, rel
        for rel in CREATED:
            assert not (self.install / rel).exists(), rel
        for rel in CREATED_DIRS:
            assert not (self.install / rel).exists(), rel
        assert _is_executable(self.install / "bin/run.sh")
        assert self.config.state.installed_version() == OLD_VERSION
        pending = read_pending(self.config.state, verify_sha256=True)
        assert pending is not None and pending.sha256 == self.sha256
        applied, tables = self.database()
        assert not set(self.migrations) & set(applied)
        assert not {"apply_test", "apply_broken"} & tables
        assert not list(self.config.state.staging.glob("apply-*"))

    def database(self) -> tuple[dict[str, str], set[str]]:
        with connect(self.config, autocommit=True) as conn:
            applied = applied_migrations(conn)
            rows = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        return applied, {r[0] for r in rows}

    def install_state(self) -> dict[str, bytes]:
        """Every file of the install directory outside state/, for "nothing was touched" checks."""
        state = self.config.state.root
        return {
            p.relative_to(self.install).as_posix(): p.read_bytes()
            for p in sorted(self.install.rglob("*"))
            if p.is_file() and not p.is_relative_to(state)
        }


class FullDisk:
    """A fake for what is outside the product: a disk with `free` bytes free, 10 MB unless
    told (`shutil.disk_usage`)."""

    def __init__(self, free: int = 10**7) -> None:
        self.free = free

    def __call__(self, path: object) -> SimpleNamespace:
        return SimpleNamespace(total=10**12, used=10**12 - self.free, free=self.free)


def run_step(site: Config, name: str, func: Callable[[StepContext], dict[str, Any]],
             sha256: str) -> dict[str, Any]:
    """Step `name` in this process (where a fake can stand in for the disk), as job `a1`."""
    job = {"id": "a1", "params": {"sha256": sha256}, "steps": []}
    return func(StepContext(site, job, name, lambda *args: None))


def install_old_version(config: Config) -> None:
    for rel, content in OLD_FILES.items():
        path = config.install_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    os.chmod(config.install_path / "bin/run.sh", 0o755)


def publish(folder: Path, private_key: Path, files: dict[str, bytes],
            migrations: list[tuple[str, str]], version: str = NEW_VERSION,
            product: str = "autotel") -> Path:
    """Build a signed package, as `autotel publish` does."""
    source = folder / "src"
    for rel, content in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(content)
    sources = [Source(rel, source / rel) for rel in files]
    sql = []
    for name, text in migrations:
        (folder / name).write_text(text, encoding="utf-8")
        sql.append(Source(name, folder / name))
    now = utcnow()
    spec = PackageSpec(version=version, notes="Test update", product=product, created=now,
                       expires=now + timedelta(days=30), files=sources, migrations=sql)
    return build_package(spec, load_private_key(private_key), folder / "out")


def receive(config: Config, package: Path) -> str:
    """Keep a package as pending, exactly as the receive job does; return its sha256."""
    upload = config.state.incoming / package.name
    shutil.copyfile(package, upload)
    manifest = verify_package(upload, config, installed_version=config.state.installed_version())
    sha256 = file_sha256(upload)
    store_pending(config.state, upload, manifest, sha256)
    return sha256


def prepare(config: Config, private_key: Path, folder: Path,
            migrations: list[tuple[str, str]] | None = None) -> Release:
    """A site on v1.0.0 with v1.1.0 pending (by default with one good migration)."""
    migrations = [GOOD_MIGRATION] if migrations is None else migrations
    install_old_version(config)
    sha256 = receive(config, publish(folder, private_key, NEW_FILES, migrations))
    tables = ["apply_test"] if GOOD_MIGRATION in migrations else []
    return Release(config, sha256, [name for name, _ in migrations], tables)


def _is_executable(path: Path) -> bool:
    return os.name == "nt" or bool(path.stat().st_mode & stat.S_IXUSR)


def step_events(events: list[dict[str, Any]]) -> list[str]:
    """The steps in the order they first appear in a job's events."""
    seen: list[str] = []
    for event in events:
        if event["step"] not in seen:
            seen.append(event["step"])
    return seen
