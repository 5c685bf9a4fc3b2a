"""Where a package path lands in the install directory, checked once more before any write.

The package check (`autotel.package.rules`) already refuses unsafe and protected
paths; the apply checks again, on the real disk, right before it writes: a path
must not leave the install directory through `..` or a symbolic link, and must not
land on a protected file, on autotel's own configuration or in the state directory.

These checks run on every file of an update, three times per apply, so the loop
works on strings with `os.path` (pathlib objects cost more than the checks), takes
one `os.lstat` per path for both "is it a link" and "what is there", and resolves
each folder once per pass.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from functools import cached_property
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

    def target(self, rel: str, folders: dict[str, str] | None = None) -> Path:
        """The absolute path for package path `rel`.

        `folders` caches resolved folders within one pass over many files.

        Raises:
            PackageError: the path is unsafe, protected, or resolves outside the install
                directory or into the state directory.
        """
        return Path(self._checked(rel, {} if folders is None else folders)[0])

    def targets(self, rels: list[str]) -> list[Path]:
        """`target` of each path, resolving each folder once."""
        folders: dict[str, str] = {}
        return [Path(self._checked(rel, folders)[0]) for rel in rels]

    def kind_of(self, rel: str) -> Kind:
        """What is at `rel` in the install directory now (None: nothing, or a file in the way)."""
        return _kind(_lstat_mode(os.path.join(self._root, _native(rel))))

    def plan(self, paths: list[str]) -> ApplyPlan:
        """What installing `paths` replaces and creates; every path checked first.

        The kind of each path comes from the lstat its check took; only the folders
        of new files are looked up again.

        Raises:
            PackageError: an unsafe target, or a file where a folder is (or the reverse).
        """
        folders: dict[str, str] = {}
        kinds = {rel: _kind(self._checked(rel, folders)[1]) for rel in paths}

        def kind_of(rel: str) -> Kind:
            if rel not in kinds:  # a folder above a new file
                kinds[rel] = self.kind_of(rel)
            return kinds[rel]

        return make_plan(paths, kind_of)

    def _checked(self, rel: str, folders: dict[str, str]) -> tuple[str, int | None]:
        """The absolute path of `rel` and its lstat mode (None: nothing there), once checked."""
        clean = normalise(rel)
        pattern = protected_match(clean, self.protected)
        if pattern is not None:
            raise PackageError(f"{rel}: protected (pattern {pattern!r}); an update never "
                               "replaces it")
        path = os.path.join(self._root, _native(clean))
        mode = _lstat_mode(path)
        if mode is not None and stat.S_ISLNK(mode):
            real = _real(path, rel)
        else:
            folder, name = os.path.split(path)
            if folder not in folders:
                folders[folder] = _real(folder, rel)
            real = os.path.join(folders[folder], name)
        self._refuse_outside(rel, real)
        return path, mode

    def _refuse_outside(self, rel: str, real: str) -> None:
        """Raise unless `real` is in the install directory and not in a place of autotel's."""
        case = os.path.normcase(real)
        root, *places = self._bounds
        if not _inside(case, root):
            raise PackageError(f"{rel}: leads outside the install directory {self.root} "
                               f"(to {real})")
        for bounds, shown in zip(places, self.forbidden, strict=True):
            if _inside(case, bounds):
                raise PackageError(f"{rel}: lands in {shown}, which belongs to autotel itself")

    @cached_property
    def _root(self) -> str:
        return str(self.root)

    @cached_property
    def _bounds(self) -> list[tuple[str, str]]:
        """The root, then each forbidden place, as `_inside` compares them (once, not per path)."""
        out = []
        for place in (self.root, *self.forbidden):
            base = os.path.normcase(str(place))
            out.append((base, base.rstrip(os.sep) + os.sep))
        return out


def _inside(case: str, bounds: tuple[str, str]) -> bool:
    """`case` (normcased) is the place `bounds` stands for, or under it (string tests: fast)."""
    base, below = bounds
    return case == base or case.startswith(below)


def _native(rel: str) -> str:
    """A package path with this system's separator (normalised paths use '/')."""
    return rel.replace("/", os.sep)


def _lstat_mode(path: str) -> int | None:
    """The mode of `path` itself (a link is not followed), None when nothing is there.

    A file where a folder of `path` should be is "nothing there" too (ENOTDIR on
    POSIX, not found on Windows): the plan then finds that file among the folders
    of `path` and refuses it by name. So is a path through a loop of links, which
    resolving its folder then refuses.
    """
    try:
        return os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None
        raise


def _kind(mode: int | None) -> Kind:
    if mode is None:
        return None
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "special"


def _real(path: str, rel: str) -> str:
    """`path` with every symbolic link followed.

    Raises:
        PackageError: the links form a loop (Python 3.11 raises RuntimeError for it).
    """
    try:
        return str(Path(path).resolve())
    except RuntimeError as e:
        raise PackageError(f"{rel}: goes through a loop of symbolic links ({e})") from None
