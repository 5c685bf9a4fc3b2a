"""The admin's storage folder: archives per client, each client's cursor, pins.

    <storage>/known_agents.json         pinned agent certificates (see `pinning`)
    <storage>/<client_id>/*.jsonl.gz    verified archives, never a temp file
    <storage>/<client_id>/cursor.json   where the next export of that client starts
    <storage>/.incoming/                temp files being received or written, and
                                        <client_id>~resume.part/.json: a download the
                                        link cut, kept to be resumed (`resume_point`)
    <storage>/.locks/<client_id>.lock   held while a push of that client runs

The order is what makes a push lose nothing and deliver nothing twice: the archive
is received into `.incoming/` while being verified, fsynced, renamed into the
client's folder, and only then does the cursor move. A crash between the rename
and the cursor write is covered by a journal entry (`pending`) written before the
rename: the next push adopts the pending cursor if the archive made it.

A download the link cut is kept, with the agent's name for that archive (its ETag),
while the cursor stays where it was: the next push asks for the rest of the same
archive (`AgentSession.export` with a `ResumePoint`), and the whole file is verified
as if it had arrived at once. Over a link that breaks more often than a large backlog
takes to download, that is the difference between arriving and never arriving.

Empty exports (0 records) advance the cursor but store no archive: an idle site
pushed every few minutes would otherwise fill the folder with empty files that say
nothing the cursor file does not already say.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from autotel.admin.pinning import KNOWN_AGENTS, KnownAgents
from autotel.admin.verify import Announced, ArchiveVerifier, BackgroundVerifier
from autotel.errors import ConfigError, StateError, TransferError
from autotel.fsutil import atomic_writer, fsync_dir, replace
from autotel.lockfile import ProcessLock
from autotel.timeutil import now_iso, utcnow

CHUNK = 1 << 20
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_ETAG = re.compile(r"[!-~]{1,300}")  # what an HTTP header can carry: printable ASCII


@dataclass(frozen=True)
class StoredExport:
    """The outcome of one verified export."""

    records: int
    size: int
    archive: Path | None  # None for an empty export
    cursor: str


@dataclass(frozen=True)
class ResumePoint:
    """Where a download the link cut can go on: the agent's ETag and the bytes kept."""

    etag: str
    offset: int


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
        # '~' cannot occur in a client id, so one client's temp names never match another's
        self.partial = self.incoming / f"{client_id}~resume.part"
        self.partial_meta = self.incoming / f"{client_id}~resume.json"
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

    def resume_point(self, cursor: str | None) -> ResumePoint | None:
        """The download a cut link left for this same `cursor`, if part of it arrived.

        A partial file from any other cursor (the cursor moved since) is removed.
        """
        meta = self._partial_meta()
        offset = self.partial.stat().st_size if self.partial.is_file() else 0
        if meta is None or meta.get("cursor") != cursor or not 0 < offset < meta["length"]:
            self._drop_partial()
            return None
        return ResumePoint(meta["etag"], offset)

    def receive(self, announced: Announced, chunks: Iterable[bytes], *, etag: str = "",
                asked: str | None = None, resumed_from: int = 0) -> StoredExport:
        """Receive, verify and store one export body; then advance the cursor.

        `etag` names the archive (kept to resume it if the link breaks; without one a
        broken download is dropped), `asked` is the cursor it was asked with, and
        `resumed_from` the bytes of it kept from before (the body is the rest).

        Raises:
            TransferError: the body does not match what was announced (nothing stored,
                cursor unchanged).
            StateError: the admin's own disk failed (full, read-only, permissions).
        """
        try:
            checked = self._receive_checked(announced, chunks, etag, asked, resumed_from)
            archive = self._store(self.partial, announced) if announced.records else None
            self._drop_partial()
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
            with contextlib.suppress(OSError):
                self._drop_partial()  # whole or not, the next push asks for it again
            raise StateError(f"{self.root}: cannot store the archive: {e}") from e
        return StoredExport(checked.records, checked.size, archive, announced.cursor)

    def _receive_checked(self, announced: Announced, chunks: Iterable[bytes], etag: str,
                         asked: str | None, resumed_from: int) -> ArchiveVerifier:
        """The body into the partial file, checked whole and durable.

        A body that arrived whole but wrong, or a break without an ETag, drops the
        partial file; a break with one keeps it (made durable) for the next push.
        """
        verifier = BackgroundVerifier()
        keep = False
        try:
            with self._open_partial(announced, etag, asked, resumed_from, verifier) as out:
                try:
                    for chunk in chunks:
                        out.write(chunk)
                        verifier.update(chunk)
                except BaseException:
                    keep = bool(etag) and out.tell() > 0
                    raise
                finally:
                    out.flush()
                    os.fsync(out.fileno())
            return verifier.finish(announced)
        except BaseException:
            if not keep:
                self._drop_partial()
            raise
        finally:
            verifier.close()

    @contextlib.contextmanager
    def _open_partial(self, announced: Announced, etag: str, asked: str | None,
                      resumed_from: int, verifier: BackgroundVerifier) -> Iterator[IO[bytes]]:
        """The partial file, ready for the body: emptied for a new archive, or positioned
        after the bytes kept (which the verifier reads first) for a resumed one.

        Raises: TransferError when the agent resumed another archive than the one kept.
        """
        if not resumed_from:
            self._drop_partial()
            if etag:
                self._write_partial_meta({"etag": etag, "cursor": asked, "length": announced.length,
                                          "sha256": announced.sha256})
            with open(self.partial, "wb") as out:
                yield out
            return
        meta = self._partial_meta()
        if meta is None or (meta["length"], meta["sha256"]) != (announced.length, announced.sha256):
            raise TransferError("the agent resumed another archive than the one this push kept")
        with open(self.partial, "r+b") as out:
            out.truncate(resumed_from)
            while block := out.read(CHUNK):
                verifier.update(block)
            yield out

    def _partial_meta(self) -> dict[str, Any] | None:
        """What the kept download is; None if there is none or it is unreadable."""
        try:
            meta = json.loads(self.partial_meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        wanted = {"etag": str, "length": int, "sha256": str}
        if not isinstance(meta, dict) or not all(isinstance(meta.get(k), t)
                                                 for k, t in wanted.items()):
            return None
        if not _ETAG.fullmatch(meta["etag"]):
            return None  # sent as If-Range, it would fail every push before a byte arrived
        return meta

    def _write_partial_meta(self, meta: dict[str, Any]) -> None:
        with atomic_writer(self.partial_meta, tmp_dir=self.incoming) as f:
            f.write(json.dumps(meta).encode("utf-8"))

    def _drop_partial(self) -> None:
        for path in (self.partial_meta, self.partial):  # the description first: never a
            with contextlib.suppress(FileNotFoundError):  # file kept without knowing what it is
                path.unlink()

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
        """Temp files of this client that a killed push of an earlier autotel left (the
        kept download is not one); safe to delete under the lock."""
        for leftover in self.incoming.glob(f"{self.client_id}~*.part"):
            if leftover != self.partial:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
