"""Helpers for the push tests: a site ready for many sessions, rows, and a TCP relay.

The relay is real TCP on 127.0.0.1 and passes TLS through untouched (the admin still
sees the agent's own certificate), so what the tests break is the network, not the
product: it can cut every connection or stop forwarding (a stall) once a number of
bytes went downstream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import socket
import subprocess
import threading
from pathlib import Path
from typing import Self

from autotel.admin.push import PushRequest
from autotel.config import Config
from autotel.db import connect
from autotel.db.migrate import migrate_site
from tests.agent_support import with_agent
from tests.foundation_support import cli

CLIENT = "plant_A"


def push_request(tmp_path: Path, keys: tuple[Path, Path], port: int,
                 **changes: object) -> PushRequest:
    """A session with the test agent on 127.0.0.1:`port`, archives under `tmp_path/data`."""
    base = PushRequest(host="127.0.0.1", port=port, client_id=CLIENT, key_path=keys[0],
                       storage=tmp_path / "data")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def busy(site: Config) -> Config:
    """The site migrated, allowing the many logins a test makes from 127.0.0.1 in a minute."""
    migrate_site(site)
    return with_agent(site, auth_per_minute=1000, challenge_per_minute=1000)


def insert_rows(config: Config, count: int, start: int = 0) -> None:
    """`count` rows with sensors `s<start>` ... in one transaction, made by the server
    (a hundred thousand rows in a fraction of a second)."""
    with connect(config) as conn:
        conn.execute(
            "INSERT INTO readings (time, sensor, value) "
            "SELECT now(), 's' || (%s + g), g FROM generate_series(0, %s - 1) AS g",
            (start, count),
        )


def archived_sensors(storage: Path) -> list[str]:
    """The sensor of every line of every archive of CLIENT, in archive order."""
    sensors = []
    for archive in sorted((storage / CLIENT).glob("*.jsonl.gz")):
        lines = gzip.decompress(archive.read_bytes()).splitlines()
        sensors += [json.loads(line)["sensor"] for line in lines]
    return sensors


class Relay:
    """`with Relay(agent_port, cut_after=200_000) as relay:` then push to `relay.port`."""

    def __init__(
        self, target_port: int, *, cut_after: int | None = None, stall_after: int | None = None
    ) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.stall_after = stall_after
        self.once = False  # `arm(once=True)`: the connections after the fault go through
        self.downstream = 0
        self.broke = threading.Event()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    def arm(self, *, cut_after: int | None = None, stall_after: int | None = None,
            once: bool = False) -> None:
        """Count downstream bytes from zero again, with new limits (none: just forward);
        `once`: a connection made after the fault is forwarded whole (a link that came back)."""
        with self._lock:
            self.cut_after, self.stall_after, self.downstream = cut_after, stall_after, 0
            self.once = once
            self.broke.clear()

    def __enter__(self) -> Self:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)  # closing a socket does not wake a blocked accept()
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if self.once and self.broke.is_set():
                self.arm()
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, False)
            self._spawn(self._pump, upstream, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, down: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if down:
                    data = self._allowed(data)
                if data:
                    sink.sendall(data)
                if down and self.broke.is_set():
                    return self._break(source, sink)
            sink.shutdown(socket.SHUT_WR)

    def _allowed(self, data: bytes) -> bytes:
        """The part of `data` that may still go downstream; nothing once broken."""
        if self.broke.is_set():
            return b""
        limit = self.cut_after if self.cut_after is not None else self.stall_after
        with self._lock:
            if limit is not None and self.downstream + len(data) >= limit:
                data = data[: max(0, limit - self.downstream)]
                self.broke.set()
            self.downstream += len(data)
        return data

    def _break(self, source: socket.socket, sink: socket.socket) -> None:
        if self.cut_after is not None:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        # a stall: keep both sockets open and silent until the relay closes
        self._closing.wait()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_push_cli(
    storage: Path, key: Path, port: int, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`autotel push` against 127.0.0.1:`port` as a real subprocess."""
    return cli("push", "--host", "127.0.0.1", "--port", str(port), "--client-id", CLIENT,
               "--key", str(key), "--storage", str(storage), *extra)
