"""Applying an update of 1,000 files (50 MB, mixed sizes) against an admin's copy script.

    uv run python bench/apply.py [--files 1000] [--mb 50] [--repeat 5]
    BENCH_DIR=/mnt/fresh-ext4 uv run python bench/apply.py      # measure on another disk

Measured in the same run, on the same disk, each round on fresh copies, `sync` before
each timed part so none pays for another's writes; medians of `--repeat` rounds, and
the median of each round's own ratio (the parts of a round see the same disk):

- reference: `cp -a old backup && cp -a new/. old/ && sync` — what an admin would script:
  not verified, not atomic per file, not resumable, durable only at the final sync.
- floor:     the least a durable, per-file atomic apply can do in Python: hard-link each
  old file into a backup folder, copy the new one (already unpacked, not verified) to a
  temp file beside it, `sync`, `os.replace` each, `sync`. No package, no hashes, no zip.
- verified floor: the least an apply that checks what it installs can do once everything
  was prepared while the update waited (files unpacked, untimed): hash the package zip
  and every unpacked file against the manifest on two threads, hard-link each old file
  into a backup folder (no copy, no zip), `os.replace` each new one, `sync`.
- same work: a script doing what the apply must, with none of its guarantees: `zip -0`
  of the old files, `unzip` the package, `sha256sum -c` every file against the
  manifest, `cp -a` over, `sync` (needs Debian's `zip` and `unzip`).
- autotel:   an `apply` job in a real `autotel runner` (started and idle beforehand,
  with a real `autotel portal` streaming the progress to one SSE reader, as the
  operator's page does), from submitting the job to its file landing in `done/`.
  As on a site, the `stage` job that `receive` queues has unpacked the update while
  it waited (untimed, like the script's unpacked `new/`; its time is reported): the
  apply re-verifies the signed package (signature, rules, the zip's SHA-256), hashes
  every unpacked file again, writes the backup zip, one flush, renames into place,
  version.txt, restart.flag. No migrations (no database in the loop).
- autotel, unpacking: the same apply on a site where nothing was unpacked ahead (no
  room for it): the apply inflates and hashes every file as it writes it. The two
  applies take turns going first, round by round, so neither always pays for the
  other's writes.

Creating files dominates all of them, and its cost depends on the disk's recent past:
on an ext4 without a journal (this machine's root) each new inode is searched past
the ones deleted in the last minutes (`recently_deleted` in the kernel), so a disk
that has just run the test suite makes every `cp -a` several times slower. Run it
once on the default temp folder and once on a freshly made ext4 (`BENCH_DIR`) to see
both: docs/benchmarks.md has the commands.

Files: 60% small (1–16 KiB), 30% medium (16–256 KiB), 10% large, scaled so the tree
holds `--mb` MB; half are compressible text (the publisher deflates them), half random
(stored). Also reports the peak RSS (VmHWM) of the runner, its step worker and the portal.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx

from autotel.config import Config, load_config
from autotel.crypto.keys import generate_keypair
from autotel.crypto.signing import load_private_key
from autotel.package.build import PackageSpec, Source, build_package
from autotel.package.manifest import Manifest
from autotel.package.pending import read_pending, store_pending
from autotel.package.verify import verify_package
from autotel.package.zipread import file_sha256
from autotel.site.create import SiteOptions, create_site
from autotel.spool.queue import Spool
from autotel.timeutil import parse_iso, utcnow

PIN = "1234"
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
                 new: dict[str, bytes]) -> tuple[Config, str, Path, Manifest]:
    options = SiteOptions(client_id="bench", public_keys=[public], pin=PIN)
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
    store_pending(config.state, package, manifest, sha256)  # moves the zip into the state
    stored = read_pending(config.state)
    assert stored is not None
    return config, sha256, stored.path, manifest


def settle() -> None:
    """Flush every disk before a timed part, twice: the first `sync` can leave a loop
    device's writes dirty in its backing file, which would flush during the timing."""
    for _ in range(2):
        subprocess.run(["sync"], check=True)


def time_script(root: Path, old: dict[str, bytes], new: dict[str, bytes]) -> float:
    write_tree(root / "install", old)
    write_tree(root / "new", new)
    settle()
    script = f"cp -a {root}/install {root}/backup && cp -a {root}/new/. {root}/install/ && sync"
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - start


def time_same_work(root: Path, old: dict[str, bytes], package: Path, manifest: Manifest) -> float:
    """The script doing the work the apply must do, with none of its guarantees."""
    install = root / "install"
    write_tree(install, old)
    (root / "replaced.txt").write_text("".join(f.path + "\n" for f in manifest.files
                                               if f.path in old))
    (root / "sums.txt").write_text("".join(f"{f.sha256}  {f.path}\n" for f in manifest.files))
    settle()
    script = (f"set -e; cd {install}; zip -q -0 -@ {root}/backup.zip < {root}/replaced.txt; "
              f"unzip -q {package} 'files/*' -d {root}/unpacked; "
              f"cd {root}/unpacked/files; sha256sum --quiet -c {root}/sums.txt; "
              f"cp -a {root}/unpacked/files/. {install}/; sync")
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - start


def time_floor(root: Path, old: dict[str, bytes], new: dict[str, bytes]) -> float:
    install, unpacked, backup = root / "install", root / "new", root / "backup"
    write_tree(install, old)
    write_tree(unpacked, new)
    settle()
    start = time.perf_counter()
    for rel in new:
        (backup / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(install / rel, backup / rel)
        shutil.copy2(unpacked / rel, install / (rel + ".new"))
    os.sync()
    for rel in new:
        os.replace(install / (rel + ".new"), install / rel)
    os.sync()
    return time.perf_counter() - start


def time_verified_floor(root: Path, old: dict[str, bytes], new: dict[str, bytes],
                        package: Path, manifest: Manifest) -> float:
    install, unpacked, backup = root / "install", root / "new", root / "backup"
    write_tree(install, old)
    write_tree(unpacked, new)
    settle()
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        whole = pool.submit(file_sha256, package)
        found = list(pool.map(file_sha256, (unpacked / f.path for f in manifest.files)))
        assert found == [f.sha256 for f in manifest.files] and whole.result()
    for rel in new:
        (backup / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(install / rel, backup / rel)
        os.replace(unpacked / rel, install / rel)
    os.sync()
    return time.perf_counter() - start


def time_apply(config: Config, sha256: str,
               ahead: bool) -> tuple[float, dict[str, float], dict[str, int]]:
    """The apply job in a real runner, watched by a real portal with one SSE page open;
    `ahead`: after the `stage` job unpacked the update (its seconds are `steps["stage"]`)."""
    spool = Spool(config.state)
    log = open(config.state.root / "bench-services.log", "wb")  # noqa: SIM115 (closed below)
    runner = _service(config, "runner", log, {})
    port = _free_port()
    portal = _service(config, "portal", log, {"AUTOTEL_PORTAL__HOST": "127.0.0.1",
                                              "AUTOTEL_PORTAL__PORT": str(port)})
    try:
        assert spool.wait(spool.submit("ping"), 120)["state"] == "done"
        staged = spool.wait(spool.submit("stage", {"sha256": sha256}), 600) if ahead else None
        page = ProgressPage(port)
        settle()
        start = time.perf_counter()
        job = spool.wait(spool.submit("apply", {"sha256": sha256}), 600, poll_s=0.005)
        seconds = time.perf_counter() - start
        assert job["state"] == "done", job.get("error")
        page.wait_for("done")
        assert job["steps"][0]["result"]["unpacked_ahead"] is ahead
        steps = {**step_seconds(staged), **step_seconds(job)} if staged else step_seconds(job)
        return seconds, steps, {**peak_rss(runner.pid), "portal": _hwm(portal.pid)}
    except Exception:
        sys.stderr.write((config.state.root / "bench-services.log").read_text()[-3000:])
        raise
    finally:
        for service in (runner, portal):
            service.terminate()
            service.wait(30)
        log.close()


def _service(config: Config, name: str, log: IO[bytes],
             env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "autotel", "--config", str(config.config_path),
                             name], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ProgressPage:
    """What the operator's page does during an apply: read the SSE progress stream.

    Its reading thread is a daemon that ends when the portal does.
    """

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.headers = {"X-Config-Pin": PIN}
        self.steps: list[str] = []
        self.seen = threading.Event()
        self.wanted = ""
        self._wait_for_portal()
        threading.Thread(target=self._read, daemon=True).start()

    def _wait_for_portal(self) -> None:
        deadline = time.monotonic() + 60
        while True:  # the portal is up once it answers
            try:
                httpx.get(self.url + "/api/update/status", headers=self.headers).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def wait_for(self, step: str) -> None:
        self.wanted = step
        if step not in self.steps:
            assert self.seen.wait(60), f"the page never saw {step!r}: {self.steps}"

    def _read(self) -> None:
        with httpx.stream("GET", self.url + "/api/update/progress", headers=self.headers,
                          timeout=None) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    self.steps.append(json.loads(line[5:])["step"])
                    if self.steps[-1] == self.wanted:
                        self.seen.set()


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
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    old, new = make_versions(args.files, int(args.mb * 1e6), seed=1)
    where = os.environ.get("BENCH_DIR")  # a folder on the disk to measure (default: the temp dir)
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="autotel-bench-apply-", dir=where) as tmp:
        keys = generate_keypair(Path(tmp) / "keys")
        for n in range(args.repeat):
            round_dir = Path(tmp) / f"round{n}"
            script = time_script(round_dir / "script", old, new)
            floor = time_floor(round_dir / "floor", old, new)
            sites = {ahead: prepare_site(round_dir / f"autotel-{ahead}", keys[1], keys[0], old, new)
                     for ahead in (True, False)}
            _, _, package, manifest = sites[True]
            same = time_same_work(round_dir / "same", old, package, manifest)
            verified = time_verified_floor(round_dir / "verified", old, new, package, manifest)
            timed = {}
            for ahead in (True, False) if n % 2 == 0 else (False, True):  # neither always second
                config, sha256, _, _ = sites[ahead]
                timed[ahead] = time_apply(config, sha256, ahead=ahead)
            (seconds, steps, rss), (unpacking, unpacking_steps, _) = timed[True], timed[False]
            rounds.append({"script": script, "floor": floor, "verified": verified, "same": same,
                           "apply": seconds,
                           "steps": steps, "unpacking": unpacking,
                           "unpacking_steps": unpacking_steps})
            print(f"round {n}: script {script:.3f} s, floor {floor:.3f} s, verified floor "
                  f"{verified:.3f} s, same work "
                  f"{same:.3f} s, apply {seconds:.3f} s {steps}, apply unpacking "
                  f"{unpacking:.3f} s {unpacking_steps}", file=sys.stderr)
            shutil.rmtree(round_dir)
    report(rounds, rss, args.files, sum(map(len, new.values())))


def report(rounds: list[dict[str, Any]], rss: dict[str, int], files: int, size: int) -> None:
    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in rounds))

    def steps(key: str) -> dict[str, float]:
        return {name: round(statistics.median(r[key][name] for r in rounds), 3)
                for name in rounds[0][key]}

    script, floor, verified, same, apply, unpacking = (
        median(k) for k in ("script", "floor", "verified", "same", "apply", "unpacking"))
    paired = statistics.median(r["apply"] / r["script"] for r in rounds)
    print(json.dumps({"files": files, "mb": round(size / 1e6, 1),
                      "script_s": [round(r["script"], 3) for r in rounds],
                      "floor_s": [round(r["floor"], 3) for r in rounds],
                      "verified_floor_s": [round(r["verified"], 3) for r in rounds],
                      "same_work_s": [round(r["same"], 3) for r in rounds],
                      "apply_s": [round(r["apply"], 3) for r in rounds], "steps_s": steps("steps"),
                      "apply_unpacking_s": [round(r["unpacking"], 3) for r in rounds],
                      "unpacking_steps_s": steps("unpacking_steps"),
                      "ratio": round(apply / script, 2), "paired_ratio": round(paired, 2),
                      "unpacking_ratio": round(unpacking / script, 2),
                      "floor_ratio": round(floor / script, 2),
                      "verified_floor_ratio": round(verified / script, 2),
                      "unpacking_vs_same_work": round(unpacking / same, 2),
                      "peak_rss_kib": rss}))
    print(f"apply {apply:.3f} s vs cp -a + cp -a + sync {script:.3f} s: {apply / script:.2f}x "
          f"(per round {paired:.2f}x; target <= 1.0x), unpacked ahead in "
          f"{steps('steps')['stage']:.3f} s; unpacking in the apply {unpacking:.3f} s = "
          f"{unpacking / script:.2f}x, against the same work as a script ({same:.3f} s) "
          f"{unpacking / same:.2f}x; the Python floor {floor:.3f} s = {floor / script:.2f}x, "
          f"verified floor {verified:.3f} s = {verified / script:.2f}x; peak RSS "
          f"runner {rss['runner'] // 1024} MiB, step worker "
          f"{rss.get('step worker', 0) // 1024} MiB, portal {rss['portal'] // 1024} MiB")


if __name__ == "__main__":
    main()
