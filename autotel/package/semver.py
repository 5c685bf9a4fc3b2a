"""Semantic versions (semver.org 2.0): parsing and precedence, nothing else.

Update packages are accepted only when their version is newer than the installed
one, so the comparison must follow the standard exactly: `1.10.0 > 1.9.0`,
`1.2.0-rc.1 < 1.2.0`, and build metadata (`+build.5`) never changes precedence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUMBER = r"(0|[1-9]\d*)"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_PATTERN = re.compile(
    rf"^{_NUMBER}\.{_NUMBER}\.{_NUMBER}"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


@dataclass(frozen=True, order=False)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = field(default="", compare=False)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        return text + (f"+{self.build}" if self.build else "")

    def _key(self) -> tuple[object, ...]:
        # A release sorts after all its pre-releases; numeric identifiers sort
        # numerically and before alphanumeric ones (semver.org, item 11).
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Version) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Version) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Version) -> bool:
        return self._key() >= other._key()


def parse_version(text: str) -> Version:
    """Raises: ValueError naming the text when it is not a semantic version X.Y.Z[-pre][+build]."""
    match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a semantic version (expected X.Y.Z, e.g. 1.2.0)")
    major, minor, patch, pre, build = match.groups()
    return Version(
        int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (), build or ""
    )

