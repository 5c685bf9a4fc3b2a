"""Real kernel links for the push tests: two network namespaces joined by a veth pair.

The site's agent runs in one namespace and the admin's `autotel push` in the other,
each a real process started with `ip netns exec`. Between them is the kernel's own
TCP over a veth pair: `tc tbf` on each end makes it slow, and with a short queue
also lossy (packets over the queue are dropped, so TCP retransmits); `ip link set
down` on the admin's end makes it a black hole that drops everything silently, as a
radio link that fades does (no RST, no ICMP: both sides only stop hearing).

Nothing can leave the namespaces: neither has a route but its /30, and the test
process itself never sends to their addresses. Everything made here (namespaces,
links, queues, processes) is removed again, also when a test fails. A machine that
cannot make them fails the tests with a message saying what is missing: they never
skip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from autotel.config import Config
from autotel.crypto.tls import write_certificate
from tests.foundation_support import RunnerProcess, terminate, wait_for
from tests.push_support import CLIENT

AGENT_PORT = 9876  # the default: each site namespace is new, so nothing else holds it


class NetworkSetupError(AssertionError):
    """The machine cannot make namespaces or links: the tests fail, never skip."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS` (or `tc` when the first word is "tc"); raise with its stderr on failure."""
    command = list(args) if args[0] == "tc" else ["ip", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except FileNotFoundError as e:
        raise NetworkSetupError(
            f"{command[0]} is missing: these tests need iproute2 (`apt-get install iproute2`) "
            "and root"
        ) from e
    if check and done.returncode != 0:
        raise NetworkSetupError(
            f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()}; "
            "these tests need root and iproute2 with network namespaces, veth and tbf"
        )
    return done


@dataclasses.dataclass(frozen=True)
class Link:
    """A site namespace and an admin namespace, joined by one veth pair on a random /30."""

    site_ns: str
    admin_ns: str
    site_dev: str
    admin_dev: str
    site_ip: str
    admin_ip: str

    @classmethod
    def fresh(cls) -> Link:
        """Names unique to this test (at most 15 characters) and a random 10.x.y.0/30."""
        tag = secrets.token_hex(3)
        net = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
        first = secrets.randbelow(64) * 4  # the /30's network address
        return cls(f"atn-s-{tag}", f"atn-a-{tag}", f"ats{tag}", f"ata{tag}",
                   f"{net}.{first + 1}", f"{net}.{first + 2}")

    def create(self) -> None:
        for ns in (self.site_ns, self.admin_ns):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", self.site_dev, "netns", self.site_ns, "type", "veth",
           "peer", "name", self.admin_dev, "netns", self.admin_ns)
        for ns, dev, addr in ((self.site_ns, self.site_dev, self.site_ip),
                              (self.admin_ns, self.admin_dev, self.admin_ip)):
            ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")

    def remove(self) -> None:
        """End what still runs in the namespaces (only this test's processes can be
        there), then delete them: their veth ends and queues go with them."""
        for ns in (self.site_ns, self.admin_ns):
            for pid in ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "delete", ns, check=False)
        left = set(ip("netns", "list").stdout.split()) & {self.site_ns, self.admin_ns}
        if left:
            raise NetworkSetupError(f"left behind after the test: {', '.join(sorted(left))}")

    def shape(self, kbit: int, queue_bytes: int, *, up_kbit: int | None = None) -> None:
        """The site's side sends at `kbit`, the admin's at `up_kbit` (default the same);
        beyond `queue_bytes` waiting in either direction, packets are dropped."""
        for ns, dev, rate in ((self.site_ns, self.site_dev, kbit),
                              (self.admin_ns, self.admin_dev, up_kbit or kbit)):
            ip("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
               "rate", f"{rate}kbit", "burst", "4kb", "limit", str(queue_bytes))

    def drops(self) -> int:
        """Packets the queues dropped so far, both directions."""
        total = 0
        for ns, dev in ((self.site_ns, self.site_dev), (self.admin_ns, self.admin_dev)):
            stats = ip("tc", "-s", "-j", "-n", ns, "qdisc", "show", "dev", dev).stdout
            total += sum(int(q.get("drops", 0)) for q in json.loads(stats))
        return total

    def cut(self) -> None:
        """The admin's end goes down: a silent black hole both ways."""
        ip("-n", self.admin_ns, "link", "set", self.admin_dev, "down")

    def restore(self) -> None:
        ip("-n", self.admin_ns, "link", "set", self.admin_dev, "up")

    def in_site(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.site_ns, *command]

    def in_admin(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.admin_ns, *command]

    def delivered(self) -> tuple[int, int]:
        """(bytes the admin's kernel acknowledged, bytes received from the admin) on the
        site's busiest connection with it now: how far a transfer has got."""
        listed = ip("netns", "exec", self.site_ns, "ss", "-Htin", "dst", self.admin_ip).stdout
        counters = [(_counter(line, "bytes_acked"), _counter(line, "bytes_received"))
                    for line in listed.splitlines() if "bytes_" in line]
        return max(counters, default=(0, 0), key=sum)

    def connections(self, peer: str) -> list[str]:
        """The site's TCP connections with `peer`, as `ss` lists them (owners included)."""
        listed = ip("netns", "exec", self.site_ns, "ss", "-Htnp", "dst", peer).stdout
        return [line for line in listed.splitlines() if line.strip()]


def _counter(ss_line: str, name: str) -> int:
    found = re.search(rf"\b{name}:(\d+)", ss_line)
    return int(found.group(1)) if found else 0


@contextlib.contextmanager
def kernel_link() -> Iterator[Link]:
    link = Link.fresh()
    try:
        link.create()
        yield link
    finally:
        link.remove()


def _environment(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTEL_")}
    return {**env, **overrides}


class NetAgent:
    """`autotel agent` of a site, inside the link's site namespace, on its veth address."""

    def __init__(self, config: Config, link: Link, **agent: int) -> None:
        self.config = config
        self.link = link
        self.console_file = config.state.root / "agent-console.log"
        self.settings = {f"AUTOTEL_AGENT__{k.upper()}": str(v) for k, v in agent.items()}
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start it with a certificate for its address, as `autotel cert --ip` makes."""
        write_certificate(self.config.state.tls, f"autotel agent {self.config.client_id}",
                          extra_ips=[self.link.site_ip])
        env = _environment(AUTOTEL_AGENT__HOST=self.link.site_ip,
                           AUTOTEL_AGENT__PORT=str(AGENT_PORT), **self.settings)
        command = [sys.executable, "-m", "autotel", "--config", str(self.config.config_path),
                   "agent"]
        with open(self.console_file, "ab") as out:
            self.proc = subprocess.Popen(self.link.in_site(*command), stdout=out,
                                         stderr=subprocess.STDOUT, env=env)

    def ready(self) -> None:
        assert self.proc is not None
        proc = self.proc
        wait_for(lambda: "agent listening" in self.console() or proc.poll() is not None, 30,
                 "the agent to listen")
        assert proc.poll() is None, self.console()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def log(self) -> str:
        """Its log file under state/logs/, as a plant's support reads it."""
        path = self.config.state.logs / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def console(self) -> str:
        """What it wrote to stdout and stderr (the log again, and anything not logged)."""
        return self.console_file.read_text(errors="replace") if self.console_file.exists() else ""

    def sessions(self) -> list[dict[str, Any]]:
        path = self.config.state.sessions
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def connections_with(self, peer: str) -> list[str]:
        """The connections with `peer` this agent still holds (closed ones the kernel
        still tries to finish belong to no process)."""
        assert self.proc is not None
        return [c for c in self.link.connections(peer) if f"pid={self.proc.pid}," in c]


@contextlib.contextmanager
def site_services(config: Config, link: Link, *, runner: bool = True,
                  **agent: int) -> Iterator[NetAgent]:
    """The site's agent on the link (with `agent:` settings) and, unless told not to, its
    runner; started side by side, stopped afterwards whatever happened."""
    agent_process = NetAgent(config, link, **agent)
    runner_process = RunnerProcess(config)
    try:
        agent_process.launch()
        if runner:
            runner_process.start()
        agent_process.ready()
        if runner:
            runner_process.ready()
        yield agent_process
    finally:
        agent_process.stop()
        if runner_process.proc is not None:
            runner_process.stop()


def push_command(link: Link, storage: Path, key: Path, *extra: str,
                 from_site: bool = False) -> list[str]:
    """`autotel push` to the site's agent, run in the admin's namespace (or, as another
    client with the site's own address, in the site's)."""
    command = [sys.executable, "-m", "autotel", "push", "--host", link.site_ip,
               "--port", str(AGENT_PORT), "--client-id", CLIENT, "--key", str(key),
               "--storage", str(storage), *extra]
    return link.in_site(*command) if from_site else link.in_admin(*command)


def run_push(command: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, env=_environment(),
                          timeout=timeout, check=False)


def start_push(command: Sequence[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_environment())


def finish_push(proc: subprocess.Popen[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Its outcome; a push still running after `timeout` is killed and fails the test."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the push still ran after {timeout:g} s: {out}{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cut_while(link: Link, push: Sequence[str], under_way: Callable[[], bool],
              timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `push`, cut the link as soon as `under_way()`, and give the push `timeout`
    seconds to fail; return its outcome and how many seconds after the cut it ended."""
    proc = start_push(push)
    try:
        wait_for(lambda: under_way() or proc.poll() is not None, 30, "the transfer")
    except AssertionError:
        finish_push(proc, 0.1)
        raise
    link.cut()
    cut_at = time.monotonic()
    done = finish_push(proc, timeout)
    return done, time.monotonic() - cut_at
