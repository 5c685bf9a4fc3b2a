"""Choosing what goes into a package: the admin's `--files` and `--migrations`.

Turns the paths an admin typed into `Source`s named relative to the base folder,
and refuses, before anything is built, what a site would refuse: a path outside
the base folder, a missing file, an unsafe or protected name, two names that are
one file on Windows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from autotel.config import DEFAULT_PROTECTED
from autotel.errors import ConfigError, PackageError
from autotel.package.build import Source
from autotel.package.paths import check_migration_name, find_duplicate, normalise, protected_match


def file_sources(
    paths: Iterable[Path], base_dir: Path, protected: Iterable[str] = DEFAULT_PROTECTED
) -> list[Source]:
    """Every file named or found under a named folder, with its path relative to `base_dir`.

    A relative path is looked up from the current folder, else from `base_dir`.

    Raises:
        ConfigError: a path does not exist, or lies outside `base_dir`.
        PackageError: a name a site would refuse (unsafe, protected, duplicate).
    """
    base = base_dir.resolve()
    if not base.is_dir():
        raise ConfigError(f"--base-dir {base_dir}: no such folder")
    found: dict[str, Source] = {}
    for given in paths:
        for file in _walk(_locate(given, base)):
            name = _relative(file, base, given)
            found.setdefault(name, Source(name, file))
    sources = sorted(found.values(), key=lambda s: s.name)
    _check_names([s.name for s in sources], protected)
    return sources


def migration_sources(paths: Iterable[Path]) -> list[Source]:
    """SQL files (or folders of them), named by their file name.

    Raises:
        ConfigError: a path does not exist, or two migrations share a name.
        PackageError: a name is not a plain `.sql` file name.
    """
    sources: dict[str, Source] = {}
    for given in paths:
        path = given.resolve()
        if not path.exists():
            raise ConfigError(f"--migrations {given}: no such file or folder")
        files = sorted(path.glob("*.sql")) if path.is_dir() else [path]
        for file in files:
            check_migration_name(file.name)
            if file.name in sources and sources[file.name].path != file:
                raise ConfigError(
                    f"--migrations: two files named {file.name} "
                    f"({sources[file.name].path} and {file})"
                )
            sources[file.name] = Source(file.name, file)
    duplicate = find_duplicate(sources)
    if duplicate:
        raise PackageError(f"--migrations: {duplicate[0]} and {duplicate[1]} differ only in case")
    return sorted(sources.values(), key=lambda s: s.name)


def _locate(given: Path, base: Path) -> Path:
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, base / given]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    folders = dict.fromkeys(str(c.parent) for c in candidates)
    raise ConfigError(
        f"--files {given}: no such file or folder (looked in {' and '.join(folders)})"
    )


def _walk(path: Path) -> list[Path]:
    """The file itself, or every regular file under the folder (links to folders not followed)."""
    if not path.is_dir():
        return [path]
    files = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        files += [Path(folder, n).resolve() for n in sorted(names) if Path(folder, n).is_file()]
    return files


def _relative(file: Path, base: Path, given: Path) -> str:
    if not file.is_relative_to(base):
        raise ConfigError(
            f"--files {given}: {file} is outside the base folder {base}; pass "
            "--base-dir (manifest paths are relative to it)"
        )
    return file.relative_to(base).as_posix()


def _check_names(names: list[str], protected: Iterable[str]) -> None:
    patterns = list(protected)
    for name in names:
        try:
            normalise(name)
        except PackageError as e:
            raise PackageError(f"--files: {e}; sites would refuse the package") from None
        pattern = protected_match(name, patterns)
        if pattern is not None:
            raise PackageError(
                f"--files: {name} is protected (pattern {pattern!r}); sites never "
                "let a package replace it"
            )
    duplicate = find_duplicate(names)
    if duplicate:
        raise PackageError(
            f"--files: {duplicate[0]} and {duplicate[1]} differ only in case; on "
            "Windows they are one file"
        )
