"""Exactly once: across many pushes during live writes, the archives equal the table.

Writer threads insert continuously while the admin pushes again and again: plain
autocommit rows, rows back-filled with times a month old, transactions held open
across several pushes, and transactions rolled back (whose rows must never appear).
Afterwards the union of every archive holds each row of `readings` exactly once.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from autotel.admin.push import push
from autotel.config import Config
from autotel.db import connect
from tests.agent_support import running_agent
from tests.push_support import CLIENT, busy, push_request

PUSHES = 12


class Writer(threading.Thread):
    """Inserts rows until stopped; `style` picks how its transactions look."""

    def __init__(self, config: Config, name: str, style: str, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.config, self.style, self.stop = config, style, stop
        self.random = random.Random(name)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with connect(self.config, autocommit=True) as conn:
                serial = 0
                while not self.stop.is_set():
                    serial = self._write(conn, serial)
        except BaseException as e:  # noqa: BLE001 (reported by the test, which would otherwise pass silently)
            self.error = e

    def _write(self, conn: psycopg.Connection[Any], serial: int) -> int:
        if self.style == "plain":
            self._insert(conn, serial, "now()")
            return serial + 1
        if self.style == "backfill":
            self._insert(conn, serial, "now() - interval '30 days' * random()")
            time.sleep(0.002)
            return serial + 1
        with conn.transaction() as tx:  # "held": open across pushes, sometimes rolled back
            rows = self.random.randint(1, 20)
            for offset in range(rows):
                self._insert(conn, serial + offset, "now() - interval '1 hour'")
            self.stop.wait(self.random.uniform(0.2, 1.5))
            if self.random.random() < 0.2:
                conn.execute("INSERT INTO readings (time, sensor) VALUES (now(), 'rolled back')")
                raise psycopg.Rollback(tx)  # leaves the block, rolling back all of its rows
        return serial + rows

    def _insert(self, conn: psycopg.Connection[Any], serial: int, time_sql: str) -> None:
        conn.execute(
            f"INSERT INTO readings (time, sensor, value) VALUES ({time_sql}, %s, %s)",
            (f"{self.name}-{serial}", serial / 7),
        )


def archived_rows(storage: Path) -> list[tuple[int, str]]:
    rows = []
    for archive in sorted((storage / CLIENT).glob("*.jsonl.gz")):
        for line in gzip.decompress(archive.read_bytes()).splitlines():
            row = json.loads(line)
            rows.append((row["id"], row["sensor"]))
    return rows


def test_union_of_archives_equals_the_table(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    busy_site = busy(site)
    stop = threading.Event()
    writers = [
        Writer(busy_site, f"{style}{n}", style, stop)
        for n, style in enumerate(["plain", "plain", "backfill", "held", "held", "held"])
    ]
    with running_agent(busy_site) as agent:
        request = push_request(tmp_path, admin_keys, agent.port)
        for writer in writers:
            writer.start()
        try:
            counts = [push(request).export.records for _ in range(PUSHES)]
        finally:
            stop.set()
            for writer in writers:
                writer.join(30)
        counts.append(push(request).export.records)  # every writer has committed or rolled back
    assert [w.error for w in writers] == [None] * len(writers)

    with connect(busy_site) as conn:
        table = sorted(conn.execute("SELECT id, sensor FROM readings").fetchall())
    archived = archived_rows(tmp_path / "data")
    duplicates = [row for row, n in Counter(archived).items() if n > 1]
    assert duplicates == []
    assert sorted(archived) == table
    assert sum(counts) == len(table) > 1000
    assert sum(1 for c in counts[:-1] if c) >= PUSHES // 2  # rows did arrive while writes went on
    assert not any(sensor == "rolled back" for _, sensor in archived)
