"""The admin's storage folder: archives per client, each client's cursor, pins.

    <storage>/known_agents.json         pinned agent certificates (see `pinning`)
    <storage>/<client_id>/*.jsonl.gz    verified archives, never a temp file
    <storage>/<client_id>/cursor.json   where the next export of that client starts
    <storage>/.incoming/                temp files being received or written
    <storage>/.locks/<client_id>.lock   held while a push of that client runs

The order is what makes a push lose nothing and deliver nothing twice: the archive
is received into `.incoming/` while being verified, fsynced, renamed into the
client's folder, and only then does the cursor move. A crash between the rename
and the cursor write is covered by a journal entry (`pending`) written before the
rename: the next push adopts the pending cursor if the archive made it.

Empty exports (0 records) advance the cursor but store no archive: an idle site
pushed every few minutes would otherwise fill the folder with empty files that say
nothing the cursor file does not already say.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from autotel.admin.pinning import KNOWN_AGENTS, KnownAgents
from autotel.admin.verify import Announced, ArchiveVerifier, BackgroundVerifier
from autotel.errors import ConfigError, StateError
from autotel.fsutil import atomic_writer, fsync_dir, replace
from autotel.lockfile import ProcessLock
from autotel.timeutil import now_iso, utcnow

_CLIENT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class StoredExport:
    """The outcome of one verified export."""

    records: int
    size: int
    archive: Path | None  # None for an empty export
    cursor: str


class ClientStorage:
    """One client's archives and cursor inside the storage folder."""

    def __init__(self, root: Path, client_id: str) -> None:
        if not _CLIENT_ID.match(client_id):
            raise ConfigError(
                f"--client-id {client_id!r}: use letters, digits, '_', '.', '-' (it names a folder)"
            )
        self.root = Path(root)
        self.client_id = client_id
        self.client_dir = self.root / client_id
        self.incoming = self.root / ".incoming"
        self.cursor_file = self.client_dir / "cursor.json"
        self.lock_file = self.root / ".locks" / f"{client_id}.lock"

    @property
    def known_agents(self) -> KnownAgents:
        return KnownAgents(self.root / KNOWN_AGENTS, self.incoming)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this client's lock: two pushes from one cursor would export rows twice.

        Raises:
            StateError: another push of this client is running.
        """
        for folder in (self.client_dir, self.incoming, self.lock_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        with ProcessLock(self.lock_file, f"push of {self.client_id}"):
            self._remove_stale_temps()
            yield

    def read_cursor(self) -> str | None:
        """The cursor to export from; None means nothing was received yet (full sync)."""
        state = self._load_state()
        pending = state.get("pending")
        if pending and (self.client_dir / pending["archive"]).exists():
            return str(pending["cursor"])  # the last push crashed after storing its archive
        cursor = state.get("cursor")
        return str(cursor) if cursor else None

    def receive(self, announced: Announced, chunks: Iterable[bytes]) -> StoredExport:
        """Receive, verify and store one export body; then advance the cursor.

        Raises:
            TransferError: the body does not match what was announced (nothing stored,
                cursor unchanged).
            StateError: the admin's own disk failed (full, read-only, permissions).
        """
        try:
            # '~' cannot occur in a client id, so one client's temp names never match another's
            fd, tmp_name = tempfile.mkstemp(
                prefix=f"{self.client_id}~", suffix=".part", dir=self.incoming
            )
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as f:
                    checked = _write_checked(f, announced, chunks)
                archive = self._store(tmp, announced) if announced.records else None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            self._write_state(
                {
                    "cursor": announced.cursor,
                    "period_end": announced.period_end,
                    "updated": now_iso(),
                    "records": announced.records,
                    "archive": archive.name if archive else None,
                }
            )
        except OSError as e:
            raise StateError(f"{self.root}: cannot store the archive: {e}") from e
        return StoredExport(checked.records, checked.size, archive, announced.cursor)

    def _store(self, tmp: Path, announced: Announced) -> Path:
        """Rename the verified temp file into the client's folder, journaled."""
        target = self._new_archive_path()
        state = self._load_state()
        state["pending"] = {"archive": target.name, "cursor": announced.cursor}
        self._write_state(state)
        replace(tmp, target)
        fsync_dir(self.client_dir)
        return target

    def _new_archive_path(self) -> Path:
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
        target = self.client_dir / f"{self.client_id}_{stamp}.jsonl.gz"
        if target.exists():  # same microsecond after a clock step back: never overwrite
            raise StateError(f"{target} already exists; re-run the push")
        return target

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.cursor_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise StateError(
                f"{self.cursor_file}: unreadable ({e}); restore it, or delete it for a full re-sync"
            ) from e
        if not isinstance(state, dict):
            raise StateError(f"{self.cursor_file}: not a cursor file; restore it or delete it")
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        data = json.dumps(state, indent=2, sort_keys=True) + "\n"
        with atomic_writer(self.cursor_file, tmp_dir=self.incoming) as f:
            f.write(data.encode("utf-8"))

    def _remove_stale_temps(self) -> None:
        """Temp files of this client left by a killed push; safe to delete under the lock."""
        for leftover in self.incoming.glob(f"{self.client_id}~*.part"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _write_checked(
    out: IO[bytes], announced: Announced, chunks: Iterable[bytes]
) -> ArchiveVerifier:
    """Write `chunks` to `out` and make it durable while a thread checks them.

    Raises: TransferError when the body does not match `announced`.
    """
    verifier = BackgroundVerifier()
    try:
        for chunk in chunks:
            out.write(chunk)
            verifier.update(chunk)
        out.flush()
        os.fsync(out.fileno())
        return verifier.finish(announced)
    finally:
        verifier.close()
