"""Pure rules about paths inside a package: safe, unique, not protected.

No disk access here. A path in a package names a file relative to the install
directory; sites often run Windows, so the rules reject everything that Windows
would read differently from Linux (backslashes, drive letters, `:` streams,
trailing dots and spaces, device names, 8.3 short names) and compare names
case-insensitively after normalising them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from autotel.errors import PackageError

_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", "conin$", "conout$"} | {
    f"{dev}{n}" for dev in ("com", "lpt") for n in "0123456789¹²³"
}
_SHORT_NAME = re.compile(r"~\d")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_ON_WINDOWS = re.compile(r'[<>"|?*]')
MAX_NAME_BYTES = 255  # a file or folder name on ext4, NTFS (in UTF-16 units) and most others
MAX_DEPTH = 64  # folders deep; far beyond any application, short of any recursion limit


@lru_cache(maxsize=1 << 16)  # pure, and each path of a package is checked several times
def normalise(raw: str) -> str:
    """Return `raw` as a clean relative POSIX path, or raise.

    `.` and empty components are dropped (so `./a//b` is `a/b`); everything that
    could leave the install directory or mean something else on Windows is refused.

    Raises:
        PackageError: the path is empty, absolute, has a drive letter, a backslash,
            a `..` component, a control character or a name Windows would alter.
    """
    problem = _problem(raw)
    if problem:
        raise PackageError(f"unsafe path {raw!r}: {problem}")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _problem(raw: str) -> str | None:
    if not raw:
        return "empty"
    if "\\" in raw:
        return "backslash (use '/' between folders)"
    if raw.startswith("/"):
        return "absolute path"
    if re.match(r"^[A-Za-z]:", raw):
        return "drive letter"
    if _CONTROL.search(raw):
        return "control character"
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if not parts:
        return "names no file"
    if len(parts) > MAX_DEPTH:
        return f"{len(parts)} folders deep, more than {MAX_DEPTH}"
    for part in parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            return f"the name {part[:24]!r}… is longer than {MAX_NAME_BYTES} bytes"
        if part == "..":
            return "'..' leaves the install directory"
        reason = _windows_problem(part)
        if reason:
            return reason
    return None


def _windows_problem(part: str) -> str | None:
    if ":" in part:
        return f"':' in {part!r} (a drive or an NTFS stream on Windows)"
    if _NOT_ON_WINDOWS.search(part):
        return f"{part!r} has a character Windows does not allow in names"
    if part.endswith((".", " ")):
        return f"{part!r} ends with a dot or space, which Windows drops"
    if part.split(".")[0].strip().lower() in _WINDOWS_DEVICES:
        return f"{part!r} is a Windows device name"
    if _SHORT_NAME.search(part):
        return f"{part!r} looks like a Windows 8.3 short name (~N), which can alias another file"
    return None


def compare_key(path: str) -> str:
    """The form two paths are compared in: normalised, Unicode NFC, case-folded."""
    return unicodedata.normalize("NFC", path).casefold()


def find_duplicate(paths: Iterable[str]) -> tuple[str, str] | None:
    """The first two paths that name the same file on a case-insensitive disk, if any."""
    seen: dict[str, str] = {}
    for path in paths:
        key = compare_key(normalise(path))
        if key in seen:
            return seen[key], path
        seen[key] = path
    return None


def protected_match(path: str, patterns: Iterable[str]) -> str | None:
    """The first protected pattern `path` matches (case-insensitively), or None.

    Patterns are globs relative to the install directory: `*` and `?` stay within
    one folder, `**` spans folders (`keys/**` covers everything under `keys/`).
    """
    key = compare_key(normalise(path))
    for pattern, regex, prefix in _compiled(tuple(patterns)):
        if regex.match(key) or prefix.startswith(key + "/"):
            return pattern  # the second test: a file that would replace a protected folder
    return None


@lru_cache(maxsize=32)
def _compiled(patterns: tuple[str, ...]) -> list[tuple[str, re.Pattern[str], str]]:
    """Each pattern with its regex and its literal start (up to the first wildcard)."""
    out = []
    for pattern in patterns:
        clean = compare_key(pattern.strip().strip("/"))
        cut = min((i for i in (clean.find("*"), clean.find("?")) if i >= 0), default=len(clean))
        out.append((pattern, _glob_regex(clean), clean[:cut]))
    return out


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")  # `keys/**` also covers a file named `keys`
            i += 3
        elif pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def check_migration_name(name: str) -> None:
    """A migration is a plain `.sql` file name, applied in name order.

    Raises:
        PackageError: the name has a folder part, is unsafe, or is not `.sql`.
    """
    if "/" in name or normalise(name) != name:
        raise PackageError(f"migration name {name!r}: expected a plain file name, no folders")
    if not name.lower().endswith(".sql"):
        raise PackageError(f"migration name {name!r}: expected a .sql file")
