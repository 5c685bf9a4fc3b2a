"""Receiving a large update package: `POST /update` until the agent answers `queued`.

    uv run python bench/receive.py [--files 2000] [--mb 200] [--text-share 0.5] [--repeat 3]

A fresh site in a temporary folder; its agent and runner run as real processes
(`python -m autotel agent|runner`), as the watchdog starts them. A package of
`--files` files totalling `--mb` MB (a `--text-share` of them text that deflates
about 2x, the rest random bytes that publish stores) is published, then pushed
over TLS on 127.0.0.1 `--repeat` times (the pending package is cleared between
runs). Measured in the same run:

- reference: `sha256sum` of the same files on disk (in the page cache);
- receive: from the moment the last byte of the upload is handed to the socket to
  the `200 {"status": "queued"}` answer: the agent's fsync of the upload, the
  receive job (signature, listing, hashing every entry and the zip, storing it as
  pending), the answer (the `stage` job it queues runs after the answer; each round
  waits for it, untimed);
- peak RSS (VmHWM) of the agent, the runner and the runner's step worker.

Targets (issue 4): receive / sha256sum <= 2x; peak RSS of each < 100 MB.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from autotel.config import Config, load_config
from autotel.crypto.challenge import auth_message
from autotel.crypto.keys import generate_keypair
from autotel.crypto.signing import load_private_key, sign
from autotel.crypto.tls import fingerprint_pem
from autotel.package.build import PackageSpec, Source, build_package
from autotel.package.pending import clear_pending
from autotel.site.create import SiteOptions, create_site
from autotel.spool.queue import Spool
from autotel.timeutil import parse_iso

CHUNK = 1024 * 1024


def make_files(folder: Path, count: int, total_mb: int, text_share: float) -> list[Source]:
    """`count` files of equal size; text-like ones (16 symbols: ~2x deflate) and random ones."""
    size = total_mb * 1_000_000 // count
    alphabet = b"etaoinsrhl _.\n()" * 16
    sources = []
    for i in range(count):
        text = i < count * text_share
        data = os.urandom(size)
        name = f"app/mod{i // 100:02d}/file{i:04d}" + (".py" if text else ".bin")
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.translate(alphabet) if text else data)
        sources.append(Source(name, path))
    return sources


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service(config: Config, name: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AUTOTEL_AGENT__PORT": str(port),
        "AUTOTEL_AGENT__HOST": "127.0.0.1",
        "AUTOTEL_AGENT__AUTH_PER_MINUTE": "1000",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "autotel", "--config", str(config.config_path), name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> dict[str, int]:
    """The runner's child processes by role: its step worker and multiprocessing's helper."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            role = "resource tracker" if b"resource_tracker" in command else "step worker"
            found[f"{role} ({child})"] = int(child)
    return found


def step_seconds(config: Config) -> list[float]:
    """How long each finished receive job's `receive` step took, from its job record."""
    times = []
    for path in sorted(config.state.job_dir("done").glob("*-receive.json")):
        step = json.loads(path.read_text(encoding="utf-8"))["steps"][0]
        times.append((parse_iso(step["finished"]) - parse_iso(step["started"])).total_seconds())
    return times


def wait_idle(config: Config, timeout_s: float = 600) -> None:
    spool, deadline = Spool(config.state), time.monotonic() + timeout_s
    while spool.queued_names() or spool.running_names():
        if time.monotonic() > deadline:
            raise TimeoutError("the runner did not finish its jobs")
        time.sleep(0.05)


def login(client: httpx.Client, key_path: Path, fingerprint: str) -> str:
    challenge = client.get("/auth/challenge").json()
    message = auth_message(challenge["agent_time"], challenge["nonce"], fingerprint)
    signature = base64.b64encode(sign(load_private_key(key_path), message)).decode()
    answer = client.post(
        "/auth",
        json={
            "timestamp": challenge["agent_time"],
            "nonce": challenge["nonce"],
            "signature": signature,
        },
    )
    answer.raise_for_status()
    return str(answer.json()["session_token"])


def push_once(client: httpx.Client, token: str, package: Path, version: str, sig_b64: str) -> float:
    """Seconds from the last byte handed to the socket to the answer."""
    sent: list[float] = []

    def body() -> Iterator[bytes]:
        with open(package, "rb") as f:
            while block := f.read(CHUNK):
                yield block
        sent.append(time.perf_counter())

    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/zip",
        "Content-Length": str(package.stat().st_size),
        "X-Update-Version": version,
        "X-Manifest-Signature": sig_b64,
    }
    answer = client.post("/update", content=body(), headers=headers)
    done = time.perf_counter()
    assert answer.status_code == 200 and answer.json() == {"status": "queued"}, answer.text
    return done - sent[-1]


def sha256sum(sources: list[Source]) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["sha256sum", *[str(s.path) for s in sources]], check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def wait_for_agent(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the agent did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--text-share", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autotel-bench-receive-") as tmp:
        run(Path(tmp), args)


def run(root: Path, args: argparse.Namespace) -> None:
    private, public = generate_keypair(root / "admin")
    config = load_config(
        create_site(
            root / "site", SiteOptions(client_id="bench", public_keys=[public], pin="0000")
        ).config_path
    )
    sources = make_files(root / "src", args.files, args.mb, args.text_share)
    now = datetime.now(UTC)
    started = time.perf_counter()
    package = build_package(
        PackageSpec("1.2.0", "bench", "autotel", now, now + timedelta(days=1), sources, []),
        load_private_key(private),
        root / "out",
    )
    print(
        f"package: {package.stat().st_size / 1e6:.0f} MB zip of {len(sources)} files "
        f"({args.mb} MB), published in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    with zipfile.ZipFile(package) as zf:
        sig_b64 = base64.b64encode(zf.read("manifest.sig")).decode()
    port = free_port()
    runner, agent = service(config, "runner", port), service(config, "agent", port)
    try:
        wait_for_agent(port)
        cert = (config.state.tls / "cert.pem").read_text()
        context = ssl.create_default_context(cadata=cert)
        with httpx.Client(
            base_url=f"https://127.0.0.1:{port}", verify=context, timeout=300
        ) as client:
            token = login(client, private, fingerprint_pem(cert))
            receive, reference = [], []
            for _ in range(args.repeat):
                clear_pending(config.state)
                reference.append(sha256sum(sources))
                receive.append(push_once(client, token, package, "1.2.0", sig_b64))
                wait_idle(config)  # the `stage` job receive queued, out of the next round
        rss = {"agent": peak_rss_mb(agent.pid), "runner": peak_rss_mb(runner.pid)}
        rss.update({role: peak_rss_mb(pid) for role, pid in children(runner.pid).items()})
    finally:
        for proc in (agent, runner):
            proc.terminate()
            proc.wait(30)
    ref, got = statistics.median(reference), statistics.median(receive)
    print(f"sha256sum of the files (reference): median {ref:.2f} s  runs {fmt(reference)}")
    print(f"end of upload -> queued:            median {got:.2f} s  runs {fmt(receive)}")
    steps = step_seconds(config)
    step = statistics.median(steps)
    print(f"  of which the receive step:        median {step:.2f} s  runs {fmt(steps)}")
    print(f"ratio receive / sha256sum: {got / ref:.2f}x (target <= 2x)")
    print(
        "peak RSS: "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items())
        + " (target < 100 MB)"
    )


def fmt(times: list[float]) -> str:
    return " ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    main()
