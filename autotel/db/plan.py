"""Which migrations still have to run: pure decisions, no database.

A migration is a named SQL text. Once applied, its name and the SHA-256 of its exact
bytes are recorded in `schema_migrations`; from then on the same name must always
carry the same bytes, because the database already holds what the old text did and
silently running an edited text (or skipping it) would leave sites that differ while
claiming the same schema.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from autotel.errors import DatabaseError

_BOM = "\ufeff"


@dataclass(frozen=True)
class Migration:
    """One migration: `name` (e.g. `0002_add_unit.sql`) and the file's exact bytes."""

    name: str
    content: bytes

    @classmethod
    def of(cls, name: str, body: str | bytes) -> Migration:
        """Text is hashed as its UTF-8 bytes, so a file read as text or as bytes hashes alike."""
        return cls(name, body.encode("utf-8") if isinstance(body, str) else body)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def sql(self) -> str:
        """The text to execute (a leading byte-order mark from a Windows editor removed).

        Raises:
            DatabaseError: the file is not UTF-8.
        """
        try:
            return self.content.decode("utf-8").removeprefix(_BOM)
        except UnicodeDecodeError as e:
            raise DatabaseError(
                f"migration {self.name}: not UTF-8 text ({e.reason} at byte {e.start})"
            ) from None


def in_order(migrations: Iterable[Migration]) -> list[Migration]:
    """The migrations sorted by name (the order they apply in).

    Raises:
        DatabaseError: a name is empty, is a path rather than a file name, or occurs twice.
    """
    ordered = sorted(migrations, key=lambda m: m.name)
    for index, migration in enumerate(ordered):
        if not migration.name or "/" in migration.name or "\\" in migration.name:
            raise DatabaseError(
                f"migration name {migration.name!r}: expected a plain file name such as 0002_x.sql"
            )
        if index and ordered[index - 1].name == migration.name:
            raise DatabaseError(f"migration {migration.name} is listed twice")
    return ordered


def check_unchanged(migration: Migration, applied_sha256: str | None) -> bool:
    """True if `migration` was applied already, False if it still has to run.

    Raises:
        DatabaseError: it was applied with other content (the file was edited afterwards).
    """
    if applied_sha256 is None:
        return False
    if applied_sha256 != migration.sha256:
        raise DatabaseError(
            f"migration {migration.name} was already applied with sha256 {applied_sha256}, but the "
            f"file now has sha256 {migration.sha256}: an applied migration must never be edited; "
            "restore the original file and put the change into a new migration"
        )
    return True


def pending(migrations: Iterable[Migration], applied: Mapping[str, str]) -> list[Migration]:
    """The migrations not yet in `applied` (name -> sha256), in order.

    Raises:
        DatabaseError: bad or duplicate names, or an applied migration that was edited.
    """
    return [m for m in in_order(migrations) if not check_unchanged(m, applied.get(m.name))]
