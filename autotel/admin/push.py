"""One `autotel push` session, in the order that loses nothing.

1. Everything local is checked first (key, update package, storage, the lock), so a
   mistake fails before the site does any work.
2. The agent's certificate is compared with the pin (or pinned on first contact).
3. Challenge, signature, token; then the export from this client's cursor, stored
   and verified before the cursor moves; then the optional update, in the same
   session. A failure anywhere leaves the cursor where the last verified archive
   put it, so re-running delivers the same rows again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autotel.admin.offer import UpdateOffer
from autotel.admin.pinning import (
    PinAction,
    PinnedCert,
    address_of,
    client_mismatch,
    decide,
    fetch_certificate,
    normalize_fingerprint,
)
from autotel.admin.session import AgentSession, ExportStream, Timeouts, UpdateAnswer
from autotel.admin.storage import ClientStorage, StoredExport
from autotel.crypto.signing import load_private_key
from autotel.crypto.tls import fingerprint_pem
from autotel.errors import TransferError, UnreachableError
from autotel.fsutil import megabytes

MAX_WAIT_S = 300.0


@dataclass(frozen=True)
class PushRequest:
    host: str
    client_id: str
    port: int = 9876
    key_path: Path = Path("private.pem")
    storage: Path = Path("data_storage")
    update: Path | None = None
    accept_cert: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class PushResult:
    address: str
    fingerprint: str
    pin: PinAction
    export: StoredExport
    seconds: float
    update: UpdateAnswer | None
    update_version: str | None


def push(request: PushRequest, notice: Callable[[str], None] = lambda _: None) -> PushResult:
    """Run one session; `notice` hears what the admin should see before it ends.

    Raises:
        ConfigError: bad key file, bad --accept-cert, bad client id, missing package.
        PackageError: the --update file is not an update package.
        StateError: another push of this client is running; the storage is unusable.
        UnreachableError, CertificateChangedError, AuthRefusedError, TransferError.
    """
    key = load_private_key(request.key_path)
    offer = UpdateOffer.from_zip(request.update) if request.update else None
    accept = normalize_fingerprint(request.accept_cert) if request.accept_cert else None
    storage = ClientStorage(request.storage, request.client_id)
    with storage.locked():
        started = time.monotonic()
        pinned, action = _pinned_certificate(request, storage, accept, notice)
        with AgentSession(request.host, request.port, pinned, request.timeouts) as session:
            session.authenticate(key)
            cursor = storage.read_cursor()
            if cursor is None:  # right on a first push; from a new --storage, a full re-export
                notice(f"no cursor for {request.client_id} in {request.storage}: "
                       "this push exports every reading the site has")
            with session.export(cursor, storage.resume_point(cursor)) as stream:
                if stream.resumed_from:
                    notice(resumed_notice(request.client_id, stream))
                stored = storage.receive(stream.announced, stream.chunks, etag=stream.etag,
                                         asked=cursor, resumed_from=stream.resumed_from)
            if stream.announced.reset:
                notice(reset_notice(request.client_id, stream.announced.reset))
            answer = session.send_update(offer) if offer else None
        return PushResult(
            address_of(request.host, request.port),
            pinned.sha256,
            action,
            stored,
            time.monotonic() - started,
            answer,
            offer.version if offer else None,
        )


def push_retrying(request: PushRequest, retries: int, first_wait_s: float,
                  notice: Callable[[str], None] = lambda _: None,
                  sleep: Callable[[float], None] = time.sleep) -> PushResult:
    """`push`, tried again up to `retries` times when the network failed it.

    Over a poor link a session breaks now and then; each new one resumes the download
    where the last broke. Waits double from `first_wait_s` (at most `MAX_WAIT_S`), so a
    few retries stay within the agent's sign-ins a minute. Anything but the network
    (a refused key, a changed certificate, a refused update) is not retried.

    Raises: what `push` raises, from the last attempt.
    """
    attempt = 0
    while True:
        try:
            return push(request, notice)
        except (TransferError, UnreachableError) as e:
            if attempt == retries:
                raise
            wait = min(first_wait_s * 2**attempt, MAX_WAIT_S)
            attempt += 1
            notice(f"{e}; trying again in {wait:g} s ({attempt} of {retries} retries)")
            sleep(wait)


def resumed_notice(client_id: str, stream: ExportStream) -> str:
    return (f"site {client_id}: resuming the download the link cut last time "
            f"({megabytes(stream.resumed_from)} of {megabytes(stream.announced.length)} "
            "were already here)")


def reset_notice(client_id: str, reason: str) -> str:
    """What the admin reads when the site answered a cursor that no longer fit with every row."""
    return (
        f"site {client_id}: its database changed since the last push ({reason}); every "
        "reading was exported again, so some may repeat earlier archives"
    )


def _pinned_certificate(
    request: PushRequest, storage: ClientStorage, accept: str | None, notice: Callable[[str], None]
) -> tuple[PinnedCert, PinAction]:
    """The certificate this session will trust exactly, pinned first if new or accepted."""
    address = address_of(request.host, request.port)
    known = storage.known_agents
    pinned = known.get(address)
    pem = fetch_certificate(request.host, request.port, request.timeouts.connect_s)
    presented = fingerprint_pem(pem)
    action = decide(address, pinned, presented, accept)
    if mismatch := client_mismatch(address, pem, request.client_id):
        notice(mismatch)
    if action is PinAction.TRUSTED and pinned is not None:
        return pinned, action
    cert = known.pin(address, pem)
    if action is PinAction.FIRST_CONTACT:
        notice(f"first contact with {address}: pinned its certificate SHA256 {presented}")
    else:
        notice(
            f"accepted the new certificate of {address}: SHA256 {presented} "
            f"(was {pinned.sha256 if pinned else '-'})"
        )
    return cert, action
