"""Running a site's agent and runner inside a test, and talking to it like an admin.

`running_agent(config)` starts the runner (a thread, with its real step worker
process) and the agent (127.0.0.1, port 0, the site's TLS certificate), yields a
`RunningAgent`, and stops both. The client helpers below sign the real challenge
with a real key over a real TLS connection pinned to the site's certificate.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric import rsa

from autotel.config import Config, load_config
from autotel.crypto.challenge import auth_message
from autotel.crypto.signing import load_private_key, sign
from autotel.export.archive import FRESH_S
from autotel.runner.loop import Runner
from autotel.site.create import SiteOptions, create_site
from autotel.web.agent import agent_fingerprint, build_agent
from autotel.web.server import ServerHandle


@dataclass
class RunningAgent:
    port: int
    fingerprint: str
    config: Config
    handle: ServerHandle

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts exactly the site's certificate (as a pinning admin would)."""
        return ssl.create_default_context(cadata=(self.config.state.tls / "cert.pem").read_text())

    def client(self, ip: str | None = None) -> httpx.Client:
        """A client pinned to the agent's certificate; `ip` picks the loopback source
        address (127.0.0.x), so tests of per-IP limits do not share a budget."""
        transport = httpx.HTTPTransport(verify=self.ssl_context(), local_address=ip)
        return httpx.Client(base_url=self.base_url, transport=transport, timeout=30)


def with_agent(config: Config, **changes: object) -> Config:
    """`config` with some `agent:` settings changed (in memory, as an env override would)."""
    return config.model_copy(update={"agent": config.agent.model_copy(update=changes)})


@contextlib.contextmanager
def fresh_database(server_dsn: str) -> Iterator[str]:
    """A new empty database in the test session's server (for module-scoped sites)."""
    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(server_dsn, dbname=name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_site(directory: Path, dsn: str, public_key: Path) -> Config:
    """A site like conftest's `site` fixture, for fixtures of a wider scope."""
    created = create_site(
        directory,
        SiteOptions(
            client_id="plant_A",
            public_keys=[public_key],
            pin="4321",
            dsn=dsn,
            agent_port=0,
            portal_port=0,
        ),
    )
    return load_config(created.config_path)


@contextlib.contextmanager
def running_agent(config: Config, *, migrate: bool | None = None) -> Iterator[RunningAgent]:
    """Run the site's runner and agent for the duration of the block.

    `migrate` (default: when the site has a configured DSN) applies the bundled
    migrations first, so `readings` exists.
    """
    if migrate if migrate is not None else bool(config.database.dsn.get_secret_value()):
        from autotel.db.migrate import migrate_site

        migrate_site(config)
    stop = threading.Event()
    runner = Runner(config, stop)
    thread = threading.Thread(target=runner.run_forever, name="test-runner", daemon=True)
    thread.start()
    handle = build_agent(config, port=0).start_background()
    try:
        yield RunningAgent(handle.port, agent_fingerprint(config), config, handle)
    finally:
        handle.stop()
        stop.set()
        thread.join(30)


def signed_login(
    agent: RunningAgent,
    client: httpx.Client,
    private_key: Path,
    *,
    fingerprint: str | None = None,
    timestamp: str | None = None,
) -> dict[str, str]:
    """The body of a `POST /auth` for a fresh challenge, signed with `private_key`."""
    challenge = client.get("/auth/challenge")
    challenge.raise_for_status()
    data = challenge.json()
    stamp = timestamp or data["agent_time"]
    message = auth_message(stamp, data["nonce"], fingerprint or agent.fingerprint)
    signature = sign(_private_key(private_key), message)
    return {
        "timestamp": stamp,
        "nonce": data["nonce"],
        "signature": base64.b64encode(signature).decode("ascii"),
    }


@functools.lru_cache(maxsize=8)
def _private_key(path: Path) -> rsa.RSAPrivateKey:
    """Loading (and so checking) an RSA key takes a good part of a second: once per key."""
    return load_private_key(path)


def login(agent: RunningAgent, client: httpx.Client, private_key: Path) -> str:
    """Authenticate and return the session token."""
    answer = client.post("/auth", json=signed_login(agent, client, private_key))
    answer.raise_for_status()
    return str(answer.json()["session_token"])


@contextlib.contextmanager
def logged_in(agent: RunningAgent, private_key: Path, ip: str) -> Iterator[httpx.Client]:
    """A client from its own loopback address `ip` (its own sign-in limit), signed in."""
    with agent.client(ip=ip) as client:
        client.headers["Authorization"] = f"Bearer {login(agent, client, private_key)}"
        yield client


def settle_archives(config: Config) -> None:
    """Age the site's export archives past `FRESH_S`, as if the next push came minutes
    later (a fake clock: their file times); younger ones are spared by the prune in case
    an answer is about to open them."""
    past = time.time() - FRESH_S - 60
    for archive in config.state.exports.glob("*.jsonl.gz"):
        os.utime(archive, (past, past))


@contextlib.contextmanager
def receiving_agent(directory: Path, public_key: Path, max_update_mb: int) -> Iterator[RunningAgent]:
    """An agent and runner for update uploads: a site without a database (receiving
    needs none), installed 1.0.0, accepting packages up to `max_update_mb`."""
    config = with_agent(make_site(directory, "", public_key), max_update_mb=max_update_mb)
    with running_agent(config, migrate=False) as running:
        yield running
