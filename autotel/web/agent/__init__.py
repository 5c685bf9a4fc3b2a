"""`autotel agent`: the site's HTTPS endpoint for the admin (auth, export, update).

`build_agent(config)` assembles the bottle app, the authenticator and cheroot with
the site's certificate; the caller runs it (`serve_forever`) or starts it in the
background (tests) and stops it with `stop()`. `sweep_stale_uploads(config)`, once
before the agent serves, removes what a crashed agent left in `state/incoming/`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from autotel.config import Config
from autotel.crypto.signing import load_public_keys
from autotel.crypto.tls import fingerprint_pem
from autotel.errors import ConfigError
from autotel.spool.queue import Spool, read_job_record
from autotel.web.agent.app import AUTH_BODY_LIMIT, AgentState, build_app
from autotel.web.agent.auth import Authenticator
from autotel.web.agent.bodyguard import BodyGuard
from autotel.web.agent.upload import sweep_incoming
from autotel.web.agent.upload_resume import sweep_kept
from autotel.web.bodies import ClosingGateway
from autotel.web.server import ServerHandle

log = logging.getLogger("autotel.agent")

UPDATE_PATH = "/update"
# cheroot's own body limit answers in plain text; BodyGuard enforces the limits
# instead (declared lengths at once, chunked bodies as they are read), in JSON.
CHEROOT_NO_LIMIT = 0
# Admins reach agents over poor links (a GPRS round trip can take 2 s, a lost packet
# 3 s more): the TLS handshake and the headers get longer than on the portal's LAN.
HEADER_TIMEOUT_S = 30.0


def agent_fingerprint(config: Config) -> str:
    """SHA-256 of the agent's certificate, as the admin sees it on the TLS connection.

    Raises: ConfigError when the certificate is missing (run `autotel cert`).
    """
    cert = config.state.tls / "cert.pem"
    try:
        return fingerprint_pem(cert.read_bytes())
    except FileNotFoundError:
        raise ConfigError(
            f"{cert}: the agent's certificate is missing; run `autotel cert`"
        ) from None
    except ValueError as e:
        raise ConfigError(f"{cert}: not a PEM certificate ({e}); run `autotel cert`") from None


def build_agent(config: Config, port: int | None = None) -> ServerHandle:
    """The agent's server on `config.agent.host` and `port` (default: `agent.port`).

    Raises:
        ConfigError: no trusted admin key, an unreadable key, or no certificate.
    """
    if not config.trusted_key_paths:
        raise ConfigError(
            "trusted_keys is empty: the agent would refuse every admin; "
            "add the admin's public key (autotel init --public-key PEM)"
        )
    keys = load_public_keys(config.trusted_key_paths)
    tls = config.state.tls
    agent = config.agent
    auth = Authenticator(
        keys=keys,
        fingerprint=agent_fingerprint(config),
        challenge_per_minute=agent.challenge_per_minute,
        auth_per_minute=agent.auth_per_minute,
        session_ttl_s=agent.session_ttl_s,
    )
    state = AgentState(config=config, auth=auth, stopping=threading.Event())
    update_limit = agent.max_update_mb * 1024 * 1024
    app = BodyGuard(
        build_app(state), lambda path: update_limit if path == UPDATE_PATH else AUTH_BODY_LIMIT
    )
    handle = ServerHandle(
        app,
        agent.host,
        agent.port if port is None else port,
        threads=agent.threads,
        timeout_s=agent.socket_timeout_s,
        max_body_bytes=CHEROOT_NO_LIMIT,
        certfile=tls / "cert.pem",
        keyfile=tls / "key.pem",
        name="autotel-agent",
        header_timeout_s=HEADER_TIMEOUT_S,
    )
    handle.server.gateway = ClosingGateway  # a body that cannot be read closes its connection
    handle.stopping = state.stopping  # one flag: stop() releases the streams and the waits
    return handle


def sweep_stale_uploads(config: Config) -> list[str]:
    """Remove uploads in `state/incoming/` left by an agent that crashed (up to
    `agent.max_update_mb` each, and nothing else ever removes them); return their names.

    Call it before the agent serves: then no upload is in progress. A finished upload
    that a queued or running `receive` job names is kept for that job.
    """
    removed = sweep_incoming(config.state.incoming, _uploads_in_use(Spool(config.state)))
    removed += sweep_kept(config.state.incoming)
    if removed:
        log.info("removed %d stale upload(s) from %s: %s", len(removed),
                 config.state.incoming, ", ".join(removed))
    return removed


def _uploads_in_use(spool: Spool) -> set[Path]:
    """The `upload` of every queued or running `receive` job.

    Each queued file is read before `running/` is listed: a job the runner claims
    meanwhile is then found in `running/`; one that even finished has no upload to keep.
    """
    uploads = set()
    for state, names in (("queue", spool.queued_names), ("running", spool.running_names)):
        for name in names():
            job = read_job_record(spool.paths.job_dir(state) / name, state)
            params = job.get("params")
            if job.get("kind") == "receive" and isinstance(params, dict) and params.get("upload"):
                uploads.add(Path(str(params["upload"])))
    return uploads


__all__ = ["agent_fingerprint", "build_agent", "sweep_stale_uploads"]
