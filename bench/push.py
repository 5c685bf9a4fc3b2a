"""End-to-end `autotel push` of a large table against the export path alone.

    uv run python bench/push.py [--rows 2000000] [--repeat 3]

A fresh site on its own embedded PostgreSQL in a temporary folder, `readings`
filled with `--rows` rows. Measured in the same run, each `--repeat` times (the
median is reported):

- export alone: `autotel.export.writer.export_readings` of every row into a folder,
  the step the agent's `export` job runs (snapshot, parallel COPY, gzip, fsync);
- push: `autotel.admin.push.push` as `autotel push` runs it, a full sync into an
  empty storage folder each time, against the site's real runner and agent over
  TLS on 127.0.0.1: challenge, signature, export job, transfer, verification
  (length, SHA-256, gzip, record count), fsync, rename, cursor.

Target (issue 3): push / export alone <= 1.15.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from pgserver.postgres_server import get_server

from autotel.admin.push import PushRequest, PushResult, push
from autotel.config import Config, load_config
from autotel.crypto.keys import generate_keypair
from autotel.db import dsn_for
from autotel.db.migrate import migrate_site
from autotel.export.cursor import ExportRequest
from autotel.export.writer import export_readings
from autotel.runner.loop import Runner
from autotel.site.create import SiteOptions, create_site
from autotel.web.agent import build_agent

FILL_SQL = """
INSERT INTO readings (time, sensor, value)
SELECT now() - make_interval(secs => g), 'sensor_' || (g %% 200), g * 0.001
FROM generate_series(1, %s) AS g
"""


def make_site(root: Path, dsn: str, rows: int) -> tuple[Config, Path]:
    private, public = generate_keypair(root / "admin")
    created = create_site(
        root / "site",
        SiteOptions(
            client_id="bench",
            public_keys=[public],
            pin="0000",
            dsn=dsn,
            agent_port=0,
            portal_port=0,
        ),
    )
    config = load_config(created.config_path)
    migrate_site(config)
    with psycopg.connect(dsn) as conn:
        conn.execute(FILL_SQL, (rows,))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE readings")
    agent = config.agent.model_copy(update={"auth_per_minute": 1000, "challenge_per_minute": 1000})
    return config.model_copy(update={"agent": agent}), private


@contextmanager
def running_agent(config: Config) -> Iterator[int]:
    """The site's runner (a thread with its step worker) and agent; yields the agent's port."""
    stop = threading.Event()
    runner = threading.Thread(target=Runner(config, stop).run_forever, daemon=True)
    runner.start()
    handle = build_agent(config, port=0).start_background()
    try:
        yield handle.port
    finally:
        handle.stop()
        stop.set()
        runner.join(30)


def timed(action: Callable[[], object], reset: Callable[[], None]) -> float:
    reset()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autotel-bench-push-") as tmp:
        root = Path(tmp)
        server = get_server(root / "pgdata", cleanup_mode="delete")
        try:
            run(root, server.get_uri(), args.rows, args.repeat)
        finally:
            server.cleanup()


def run(root: Path, dsn: str, rows: int, repeat: int) -> None:
    print(f"filling readings with {rows:,} rows ...", flush=True)
    config, private = make_site(root, dsn, rows)
    exports, storage = root / "exports", root / "storage"

    def clear(folder: Path) -> Callable[[], None]:
        return lambda: shutil.rmtree(folder, ignore_errors=True)

    alone: list[float] = []
    pushed: list[float] = []
    results: list[PushResult] = []
    with running_agent(config) as port:
        request = PushRequest(
            host="127.0.0.1", port=port, client_id="bench", key_path=private, storage=storage
        )
        for _ in range(repeat):  # interleaved, so both see the same machine load
            alone.append(
                timed(
                    lambda: export_readings(dsn_for(config), exports, ExportRequest()),
                    clear(exports),
                )
            )
            pushed.append(timed(lambda: results.append(push(request)), clear(storage)))
        empty = [timed(lambda: push(request), lambda: None) for _ in range(repeat)]
    last = results[-1].export
    assert last.records == rows, f"pushed {last.records} records, expected {rows}"
    ref, end_to_end = statistics.median(alone), statistics.median(pushed)
    pairs = statistics.median(p / a for p, a in zip(pushed, alone, strict=True))
    print(f"archive: {last.size / 2**20:.1f} MiB for {rows:,} rows")
    print(
        f"export alone (reference): median {ref:.2f} s  {rows / ref:,.0f} rows/s  runs {fmt(alone)}"
    )
    print(
        f"push end to end:          median {end_to_end:.2f} s  {rows / end_to_end:,.0f} rows/s  "
        f"runs {fmt(pushed)}"
    )
    print(f"push of no new rows:      median {statistics.median(empty):.2f} s (session overhead)")
    print(
        f"ratio push / export alone: {end_to_end / ref:.2f}x of medians, {pairs:.2f}x median "
        "of interleaved pairs (target <= 1.15x)"
    )


def fmt(times: list[float]) -> str:
    return " ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    main()
