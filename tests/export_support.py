"""Helpers for the export identity and witness tests: rows one transaction each, pushes
through a freshly started agent, and what the admin holds afterwards."""

from __future__ import annotations

import json
from pathlib import Path

from autotel.admin.push import PushResult, push
from autotel.config import Config
from autotel.db import connect
from tests.agent_support import running_agent
from tests.push_support import CLIENT, push_request

NOTICE = "its database changed since the last push"


def insert_each(config: Config, sensors: list[str]) -> None:
    """One transaction per row, as a collector writes: each takes a transaction id."""
    with connect(config, autocommit=True) as conn:
        for sensor in sensors:
            conn.execute(
                "INSERT INTO readings (time, sensor, value) VALUES (now(), %s, 1)", (sensor,)
            )


def table_sensors(config: Config) -> list[str]:
    with connect(config) as conn:
        return sorted(str(r[0]) for r in conn.execute("SELECT sensor FROM readings"))


def sensors(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(count)]


def pushed(config: Config, tmp_path: Path, keys: tuple[Path, Path]) -> tuple[PushResult, list[str]]:
    """One push through a freshly started agent; (its result, the admin's notices)."""
    notices: list[str] = []
    with running_agent(config, migrate=False) as agent:
        result = push(push_request(tmp_path, keys, agent.port), notice=notices.append)
    return result, [n for n in notices if not n.startswith("first contact")]


def last_session(config: Config) -> dict[str, object]:
    lines = config.state.sessions.read_text(encoding="utf-8").splitlines()
    line: dict[str, object] = json.loads(lines[-1])
    return line


def admin_cursor(tmp_path: Path) -> str:
    return str(json.loads((tmp_path / "data" / CLIENT / "cursor.json").read_text())["cursor"])


def run_transactions_past(config: Config, xmax: int) -> None:
    """Spend transaction ids, each in a transaction of its own, until the counter passes
    `xmax`: what a collector does in a day of inserting, without any export between."""
    with connect(config, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
            assert row is not None
            if int(row[0]) > xmax:
                return
