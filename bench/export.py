"""The export path's rows/s against psql + gzip on the same table, and its peak memory.

    uv run python bench/export.py [--rows 2000000] [--large 10000000] [--repeat 3]

An embedded PostgreSQL in a temporary folder; `readings` from the site's own
migration, filled with `generate_series`. Measured in the same run, best of
`--repeat`:

- reference: `psql -c "\\copy (SELECT row_to_json(r) FROM readings r) TO STDOUT" | gzip -1 > file`
- autotel:   `autotel.export.writer.export_readings` (what the `export` step runs), in a
  fresh child process whose peak RSS (`ru_maxrss`) is reported; timed inside the child,
  around the call (the child's interpreter start-up is not counted, psql's is).

Then the table grows to `--large` rows and the export's peak RSS is measured again:
flat memory means the two peaks are within ~10% and under 64 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pgserver
import psycopg
from pgserver.postgres_server import get_server

from autotel.resources import bundled_dir

CHILD = """
import json, resource, sys, time
from pathlib import Path
from autotel.export.cursor import ExportRequest
from autotel.export.writer import export_readings
start = time.perf_counter()
dsn, folder, connections = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
result = export_readings(dsn, folder, ExportRequest(), connections=connections)
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "records": result.records, "bytes": result.size,
                  "max_rss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}))
"""


def fill(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM readings").fetchone()[0]  # type: ignore[index]
        if have < rows:
            conn.execute(
                "INSERT INTO readings (time, sensor, value) "
                "SELECT now() - i * interval '1 second', "
                "'sensor-' || (i %% 200), random() * 1000 FROM generate_series(%s, %s) i",
                (have + 1, rows),
            )
        conn.execute("VACUUM ANALYZE readings")


def reference(dsn: str, psql: Path, out: Path) -> float:
    command = (
        f'"{psql}" "{dsn}" -X -q -c "\\copy (SELECT row_to_json(r) FROM readings r) TO STDOUT" '
        f'| gzip -1 > "{out}"'
    )
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    return time.perf_counter() - start


def ours(dsn: str, folder: Path, connections: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, dsn, str(folder), str(connections)],
        check=True,
        capture_output=True,
        text=True,
    )
    for old in folder.glob("*.jsonl.gz"):
        old.unlink()
    measured: dict[str, float] = json.loads(done.stdout)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--large", type=int, default=10_000_000, help="0 skips the large run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autotel-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = get_server(tmp / "pgdata", cleanup_mode="delete")
        dsn = server.get_uri()
        psql = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute((bundled_dir("migrations") / "0001_readings.sql").read_text())
        fill(dsn, args.rows)
        print(f"{args.rows:,} rows; {os.cpu_count()} CPUs; best of {args.repeat}, runs interleaved")
        variants = sorted({1, args.connections})
        refs: list[float] = []
        runs: dict[int, list[dict[str, float]]] = {n: [] for n in variants}
        for _ in range(args.repeat):  # interleaved, so a busy moment hurts both sides alike
            refs.append(reference(dsn, psql, tmp / "ref.jsonl.gz"))
            for connections in variants:
                runs[connections].append(ours(dsn, tmp / "exports", connections))
        ref = min(refs)
        print(
            f"reference psql | gzip -1: {ref:6.2f} s  {args.rows / ref:>12,.0f} rows/s  "
            f"{(tmp / 'ref.jsonl.gz').stat().st_size / 1e6:.1f} MB"
        )
        for connections in variants:
            best = min(runs[connections], key=lambda r: r["seconds"])
            assert best["records"] == args.rows, best
            print(
                f"autotel, {connections} connection(s): {best['seconds']:6.2f} s  "
                f"{args.rows / best['seconds']:>12,.0f} rows/s  {best['bytes'] / 1e6:.1f} MB  "
                f"ratio {ref / best['seconds']:.2f}x  own CPU {best['cpu_s']:.2f} s  "
                f"peak RSS {max(r['max_rss_kb'] for r in runs[connections]) / 1024:.1f} MB"
            )
        if args.large:
            fill(dsn, args.large)
            run = ours(dsn, tmp / "exports", args.connections)
            print(
                f"autotel at {args.large:,} rows: {run['seconds']:6.2f} s  "
                f"{args.large / run['seconds']:>12,.0f} rows/s  "
                f"peak RSS {run['max_rss_kb'] / 1024:.1f} MB"
            )
        server.cleanup()


if __name__ == "__main__":
    main()
