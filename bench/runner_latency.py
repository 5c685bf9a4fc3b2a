"""How fast the runner starts a job dropped into its queue, beside a 50 ms polling loop.

    uv run python bench/runner_latency.py [--drops 200]

A fresh site in a temporary folder; a real `autotel runner` process. Each drop is
what every producer does: write the job under `jobs/tmp/`, then rename it into
`queue/`; the time just before the rename is the start. The end is the first
progress event the `wait` step (with `seconds: 0`) writes from inside the step
worker, i.e. the step's code is running; the runner's own "step started" event,
written just before it hands the step to the worker, is shown too. Drops are one
at a time (the next after the previous job is done), so each measures an idle
runner noticing a file.

The reference, measured in the same run: a plain loop that lists a folder every
50 ms, timed from the same kind of rename to the loop noticing the file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from autotel.config import load_config
from autotel.runner.events import read_events
from autotel.site.create import SiteOptions, create_site
from autotel.spool.jobfile import encode_job, job_id, new_job, new_job_name
from autotel.spool.queue import Spool
from autotel.timeutil import parse_iso

POLL_S = 0.050


def drop(tmp_dir: Path, queue: Path, job: dict[str, Any], name: str) -> float:
    """Stage a job file and rename it into `queue`; return the wall time of the rename."""
    staged = tmp_dir / name
    staged.write_bytes(encode_job(job))
    started = time.time()
    os.replace(staged, queue / name)
    return started


def measure_runner(site_dir: Path, drops: int) -> tuple[list[float], list[float]]:
    config = load_config(site_dir / "autotel.yaml")
    spool, state = Spool(config.state), config.state
    runner = subprocess.Popen([sys.executable, "-m", "autotel", "--config",
                               str(config.config_path), "runner"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        spool.wait(spool.submit("ping"), 60)  # the runner and its worker are up
        dropped: dict[str, float] = {}
        for _ in range(drops):
            name = new_job_name("wait")
            job = {**new_job("wait", {"seconds": 0}), "id": job_id(name)}
            dropped[job["id"]] = drop(state.spool_tmp, state.queue, job, name)
            spool.wait(job["id"], 30)
    finally:
        runner.terminate()
        runner.wait(30)
    dispatch: list[float] = []
    in_step: list[float] = []
    for event in read_events(state.events):
        start = dropped.get(event.get("job", ""))
        if start is None or event["step"] != "wait":
            continue
        delay = (parse_iso(event["time"]).timestamp() - start) * 1000
        if "attempt" in event:  # the runner's "step started"
            dispatch.append(delay)
        elif event.get("msg_en") == "waiting 0 s":  # the step's own first report
            in_step.append(delay)
    return dispatch, in_step


def measure_polling(folder: Path, drops: int) -> list[float]:
    queue, tmp_dir = folder / "queue", folder / "tmp"
    queue.mkdir(parents=True)
    tmp_dir.mkdir()
    seen: dict[str, float] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for name in os.listdir(queue):
                seen[name] = time.time()
                os.remove(queue / name)
            time.sleep(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    delays = []
    for index in range(drops):
        name = f"{index:05d}.json"
        started = drop(tmp_dir, queue, {"kind": "ping"}, name)
        while name not in seen:
            time.sleep(0.001)
        delays.append((seen[name] - started) * 1000)
        time.sleep((index % 7) * POLL_S / 7)  # drops land at every phase of the poll cycle
    stop.set()
    poller.join()
    return delays


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def line(label: str, values: list[float]) -> str:
    return (f"{label:<44} n={len(values):<4} p50 {percentile(values, 50):7.2f} ms   "
            f"p99 {percentile(values, 99):7.2f} ms   max {max(values):7.2f} ms   "
            f"mean {statistics.fmean(values):7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autotel-bench-") as tmp:
        site = create_site(Path(tmp) / "site", SiteOptions(client_id="bench", pin="1234"))
        dispatch, in_step = measure_runner(site.config_path.parent, args.drops)
        polling = measure_polling(Path(tmp) / "poll", args.drops)
    if len(in_step) != args.drops:
        sys.exit(f"expected {args.drops} measurements, got {len(in_step)}: events missing")
    print(line("runner: drop -> step running in the worker", in_step))
    print(line("runner: drop -> runner starts the step", dispatch))
    print(line(f"reference: {POLL_S * 1000:.0f} ms polling loop notices the file", polling))
    print(f"ratio polling/runner: p50 {percentile(polling, 50) / percentile(in_step, 50):.1f}x, "
          f"p99 {percentile(polling, 99) / percentile(in_step, 99):.1f}x")
    print(json.dumps({"drops": args.drops, "target": "p50 < 10 ms, p99 < 50 ms",
                      "met": percentile(in_step, 50) < 10 and percentile(in_step, 99) < 50}))


if __name__ == "__main__":
    main()
