"""Where a package path lands in the install directory, checked once more before any write.

The package check (`autotel.package.rules`) already refuses unsafe and protected
paths; the apply checks again, on the real disk, right before it writes: a path
must not leave the install directory through `..` or a symbolic link, and must not
land on a protected file, on autotel's own configuration or in the state directory.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from autotel.apply.plan import ApplyPlan, Kind, make_plan
from autotel.config import Config
from autotel.errors import PackageError
from autotel.package.paths import normalise, protected_match


@dataclass(frozen=True)
class InstallDir:
    root: Path
    protected: tuple[str, ...]
    forbidden: tuple[Path, ...]  # the state directory and the config file

    @classmethod
    def of(cls, config: Config) -> InstallDir:
        return cls(config.install_path.resolve(), tuple(config.protected),
                   (config.state.root.resolve(), config.config_path.resolve()))

    def target(self, rel: str, folders: dict[Path, Path] | None = None) -> Path:
        """The absolute path for package path `rel`.

        `folders` caches resolved folders within one pass over many files.

        Raises:
            PackageError: the path is unsafe, protected, or resolves outside the install
                directory or into the state directory.
        """
        clean = normalise(rel)
        pattern = protected_match(clean, self.protected)
        if pattern is not None:
            raise PackageError(f"{rel}: protected (pattern {pattern!r}); an update never "
                               "replaces it")
        path = self.root / clean
        if path.is_symlink():
            real = str(path.resolve())
        else:
            real = str(_resolve(path.parent, folders) / path.name)
        if not _inside(real, self.root):
            raise PackageError(f"{rel}: leads outside the install directory {self.root} "
                               f"(to {real})")
        for place in self.forbidden:
            if _inside(real, place):
                raise PackageError(f"{rel}: lands in {place}, which belongs to autotel itself")
        return path

    def targets(self, rels: list[str]) -> list[Path]:
        """`target` of each path, resolving each folder once."""
        folders: dict[Path, Path] = {}
        return [self.target(rel, folders) for rel in rels]

    def kind_of(self, rel: str) -> Kind:
        try:
            mode = os.lstat(self.root / rel).st_mode
        except FileNotFoundError:
            return None
        return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "special"

    def plan(self, paths: list[str]) -> ApplyPlan:
        """What installing `paths` replaces and creates; every path checked first.

        Raises:
            PackageError: an unsafe target, or a file where a folder is (or the reverse).
        """
        self.targets(paths)
        return make_plan(paths, self.kind_of)


def _inside(real: str, place: Path) -> bool:
    """`real` is `place` or under it (string tests: pathlib's are slow over 1,000 files)."""
    real, base = os.path.normcase(real), os.path.normcase(str(place))
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def _resolve(folder: Path, cache: dict[Path, Path] | None) -> Path:
    if cache is None:
        return folder.resolve()
    if folder not in cache:
        cache[folder] = folder.resolve()
    return cache[folder]
