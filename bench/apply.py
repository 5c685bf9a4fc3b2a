"""Applying an update of 1,000 files (50 MB, mixed sizes) against an admin's copy script.

    uv run python bench/apply.py [--files 1000] [--mb 50] [--repeat 3]

Measured in the same run, on the same disk, each round on fresh copies, `sync` before
each timed part so neither pays for the other's writes; median of `--repeat`:

- reference: `cp -a old backup && cp -a new/. old/ && sync` — what an admin would script:
  not verified, not atomic per file, not resumable, durable only at the final sync.
- autotel:   an `apply` job in a real `autotel runner` (started and idle beforehand),
  from submitting the job to the job file landing in `done/`: re-verify the signed
  package (every hash), backup zip, stage + fsync, rename into place, version.txt,
  restart.flag. The package has no migrations (no database in the loop).

Files: 60% small (1–16 KiB), 30% medium (16–256 KiB), 10% large, scaled so the tree
holds `--mb` MB; half are compressible text (the publisher deflates them), half random
(stored). Also reports the runner's and its step worker's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from autotel.config import Config, load_config
from autotel.crypto.keys import generate_keypair
from autotel.crypto.signing import load_private_key
from autotel.package.build import PackageSpec, Source, build_package
from autotel.package.pending import store_pending
from autotel.package.verify import verify_package
from autotel.package.zipread import file_sha256
from autotel.site.create import SiteOptions, create_site
from autotel.spool.queue import Spool
from autotel.timeutil import parse_iso, utcnow

WORDS = b"temperature pressure sensor reading valve pump flow level alarm setpoint".split()


def sizes(count: int, total: int, rng: random.Random) -> list[int]:
    def one(r: float) -> int:
        if r < 0.6:
            return rng.randint(1 << 10, 16 << 10)
        return rng.randint(16 << 10, 256 << 10) if r < 0.9 else rng.randint(256 << 10, 2 << 20)

    raw = [one(rng.random()) for _ in range(count)]
    scale = total / sum(raw)
    return [max(1, int(s * scale)) for s in raw]


def content(size: int, rng: random.Random, text: bool) -> bytes:
    if not text:
        return rng.randbytes(size)
    line = b" ".join(rng.choice(WORDS) for _ in range(12)) + b"\n"
    out = bytearray()
    while len(out) < size:
        out += line if rng.random() < 0.7 else b"%d %f\n" % (rng.randint(0, 10**9), rng.random())
    return bytes(out[:size])


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def make_versions(count: int, total: int, seed: int) -> tuple[dict[str, bytes], dict[str, bytes]]:
    rng = random.Random(seed)
    names = [f"app/module{i % 25:02d}/part{i:04d}.{'py' if i % 2 else 'bin'}" for i in range(count)]
    lengths = sizes(count, total, rng)

    def version() -> dict[str, bytes]:
        return {name: content(size, rng, text=i % 2 == 1)
                for i, (name, size) in enumerate(zip(names, lengths, strict=True))}

    return version(), version()


def prepare_site(root: Path, public: Path, private: Path, old: dict[str, bytes],
                 new: dict[str, bytes]) -> tuple[Config, str]:
    options = SiteOptions(client_id="bench", public_keys=[public], pin="1234")
    created = create_site(root / "site", options)
    config = load_config(created.config_path)
    write_tree(config.install_path, old)
    write_tree(root / "src", new)
    now = utcnow()
    spec = PackageSpec(version="1.1.0", notes="bench", product="autotel", created=now,
                       expires=now + timedelta(days=1),
                       files=[Source(rel, root / "src" / rel) for rel in new], migrations=[])
    package = build_package(spec, load_private_key(private), root / "out")
    manifest = verify_package(package, config, installed_version="1.0.0")
    sha256 = file_sha256(package)
    store_pending(config.state, package, manifest, sha256)
    return config, sha256


def time_script(root: Path, old: dict[str, bytes], new: dict[str, bytes]) -> float:
    write_tree(root / "install", old)
    write_tree(root / "new", new)
    subprocess.run(["sync"], check=True)
    script = f"cp -a {root}/install {root}/backup && cp -a {root}/new/. {root}/install/ && sync"
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - start


def time_apply(config: Config, sha256: str) -> tuple[float, dict[str, int]]:
    spool = Spool(config.state)
    log = open(config.state.root / "bench-runner.log", "wb")  # noqa: SIM115 (closed below)
    runner = subprocess.Popen([sys.executable, "-m", "autotel", "--config", str(config.config_path),
                               "runner"], stdout=log, stderr=subprocess.STDOUT)
    try:
        assert spool.wait(spool.submit("ping"), 120)["state"] == "done"
        subprocess.run(["sync"], check=True)
        start = time.perf_counter()
        job = spool.wait(spool.submit("apply", {"sha256": sha256}), 600, poll_s=0.005)
        seconds = time.perf_counter() - start
        assert job["state"] == "done", job.get("error")
        print("steps:", step_seconds(job), file=sys.stderr)
        return seconds, peak_rss(runner.pid)
    except Exception:
        sys.stderr.write((config.state.root / "bench-runner.log").read_text()[-3000:])
        raise
    finally:
        runner.terminate()
        runner.wait(30)
        log.close()


def step_seconds(job: dict[str, Any]) -> dict[str, float]:
    def seconds(s: dict[str, Any]) -> float:
        return round((parse_iso(s["finished"]) - parse_iso(s["started"])).total_seconds(), 3)

    return {s["name"]: seconds(s) for s in job["steps"]}


def peak_rss(pid: int) -> dict[str, int]:
    """VmHWM in KiB of the runner and of its children, from Linux /proc."""
    peaks = {"runner": _hwm(pid)}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            peaks[_role(int(child))] = _hwm(int(child))
    return peaks


def _role(pid: int) -> str:
    """"step worker" or "resource tracker" (multiprocessing's helper), from the command line."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    return "resource tracker" if b"resource_tracker" in command else "step worker"


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    old, new = make_versions(args.files, int(args.mb * 1e6), seed=1)
    where = os.environ.get("BENCH_DIR")  # a folder on the disk to measure (default: the temp dir)
    with tempfile.TemporaryDirectory(prefix="autotel-bench-apply-", dir=where) as tmp:
        keys = generate_keypair(Path(tmp) / "keys")
        scripts: list[float] = []
        applies: list[float] = []
        rss: dict[str, int] = {}
        for n in range(args.repeat):
            round_dir = Path(tmp) / f"round{n}"
            scripts.append(time_script(round_dir / "script", old, new))
            config, sha256 = prepare_site(round_dir / "autotel", keys[1], keys[0], old, new)
            seconds, rss = time_apply(config, sha256)
            applies.append(seconds)
            shutil.rmtree(round_dir)
    script, apply = statistics.median(scripts), statistics.median(applies)
    print(json.dumps({"files": args.files, "mb": round(sum(map(len, new.values())) / 1e6, 1),
                      "script_s": [round(s, 3) for s in scripts],
                      "apply_s": [round(s, 3) for s in applies],
                      "ratio": round(apply / script, 2), "peak_rss_kib": rss}))
    print(f"apply {apply:.3f} s vs cp -a + cp -a + sync {script:.3f} s: {apply / script:.2f}x "
          f"(target <= 1.0x); peak RSS runner {rss['runner'] // 1024} MiB, "
          f"step worker {rss.get('step worker', 0) // 1024} MiB")


if __name__ == "__main__":
    main()
