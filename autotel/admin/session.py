"""The HTTP protocol with one agent, over TLS pinned to one certificate.

    GET /auth/challenge  -> nonce, agent_time (and the certificate of this connection)
    POST /auth           -> session token, for the signature over
                            autotel-auth-v1\\n<agent_time>\\n<nonce>\\n<fingerprint>
    GET /data/export     -> the archive, streamed to the caller; or the rest of one
                            a cut link left (Range + If-Range, answered 206)
    POST /update         -> the package, streamed from its file

Every failure leaves as one `TransportError` subclass with a message for the admin.
What happens to the archive (verify, store, cursor) is `storage`'s job, not this one's.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Self

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from autotel.admin.offer import UpdateOffer
from autotel.admin.pinning import PinnedCert, address_of, pinned_context
from autotel.admin.storage import ResumePoint
from autotel.admin.verify import Announced
from autotel.crypto.challenge import auth_message
from autotel.crypto.signing import sign
from autotel.crypto.tls import fingerprint_der
from autotel.deadlink import LINK_PIECE, dead_link_options
from autotel.errors import (
    AuthRefusedError,
    CertificateChangedError,
    TransferError,
    TransportError,
    UnreachableError,
)


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 10.0
    stall_s: float = 60.0  # no byte moving either way for this long: the transfer is broken
    wait_s: float = 900.0  # the agent preparing an export or checking an update, before it answers


@dataclass(frozen=True)
class UpdateAnswer:
    """The agent's verdict on a delivered package."""

    status: str  # queued, same_version, invalid_sig, invalid_package, too_large
    http_status: int
    error: str = ""
    resumed_from: int = 0  # bytes the agent held from a broken upload: only the rest was sent

    @property
    def accepted(self) -> bool:
        """Did the session do what was asked? `same_version` too: the site already has it."""
        return self.status in ("queued", "same_version")


@dataclass(frozen=True)
class ExportStream:
    announced: Announced  # of the whole archive, also when only its rest is sent
    chunks: Iterator[bytes]
    etag: str = ""  # the agent's name for the archive, to resume it if the link breaks
    resumed_from: int = 0  # the bytes of it the admin had: `chunks` are the rest


class AgentSession:
    """One authenticated session; use as a context manager so the connection is closed."""

    def __init__(self, host: str, port: int, pinned: PinnedCert, timeouts: Timeouts) -> None:
        self.address = address_of(host, port)
        self._pinned = pinned
        self._timeouts = timeouts
        self._token = ""
        transport = httpx.HTTPTransport(verify=pinned_context(pinned.pem),
                                        socket_options=dead_link_options(timeouts.stall_s))
        self._client = httpx.Client(
            base_url=f"https://{self.address}",
            transport=transport,
            timeout=httpx.Timeout(timeouts.stall_s, connect=timeouts.connect_s),
            trust_env=False,  # no proxy or CA bundle from the environment: trust is the pin
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def authenticate(self, key: rsa.RSAPrivateKey) -> None:
        """Raises: AuthRefusedError (401, 429 with its Retry-After), TransportError."""
        nonce, agent_time, fingerprint = self._challenge()
        message = auth_message(agent_time, nonce, fingerprint)
        body = {
            "timestamp": agent_time,
            "nonce": nonce,
            "signature": base64.b64encode(sign(key, message)).decode("ascii"),
        }
        with self._errors("auth"):
            response = self._client.post("/auth", json=body)
        if response.status_code != 200:
            raise _refused(response, "refused the session signature")
        token = _json(response, "auth").get("session_token")
        if not isinstance(token, str) or not token:
            raise TransferError(f"agent {self.address}: /auth answered without a session_token")
        self._token = token

    @contextlib.contextmanager
    def export(self, cursor: str | None,
               resume: ResumePoint | None = None) -> Iterator[ExportStream]:
        """Stream `GET /data/export`; no cursor asks for every row (first contact).

        With `resume`, asks for the rest of the archive a cut link left; the agent
        answers that (206) or, if it no longer has it, a new export (200).

        Raises:
            AuthRefusedError: the token was refused. TransferError: any other answer, a
            broken or stalled stream (also raised from iterating `chunks`).
        """
        params = {"cursor": cursor} if cursor else {}
        headers = self._auth()
        if resume:
            headers |= {"Range": f"bytes={resume.offset}-", "If-Range": resume.etag}
        with (
            self._errors("export"),
            self._client.stream(
                "GET", "/data/export", params=params, headers=headers, timeout=self._waiting()
            ) as response,
        ):
            if response.status_code not in (200, 206):
                response.read()
                if response.status_code in (401, 429):
                    raise _refused(response, "refused the export")
                raise TransferError(f"agent {self.address}: export failed: {_describe(response)}")
            announced = Announced.from_headers(response.headers)
            offset = 0
            if response.status_code == 206:
                offset = _resumed_at(response.headers, announced, resume, self.address)
                announced = replace(announced, length=offset + announced.length)
            _limit_stalls(response, self._timeouts.stall_s)
            # pieces as they arrive, not gathered into larger ones: what a cut link
            # leaves must be on disk, to be resumed
            yield ExportStream(announced, response.iter_raw(),
                               response.headers.get("ETag", ""), offset)

    def send_update(self, offer: UpdateOffer) -> UpdateAnswer:
        """Stream the package from its file; return the agent's verdict.

        Only the part the agent does not hold yet is sent: an upload that broke off
        earlier goes on where it stopped (`autotel.web.agent.upload_resume`).

        Raises: AuthRefusedError (token refused), TransferError (no verdict came back).
        """
        offset = self._held(offer)
        response = self._post_update(offer, offset)
        held_less = _resume_failed(response) if offset else None
        if held_less is not None:  # the agent lost part of it since it said
            offset = held_less
            response = self._post_update(offer, offset)
        if _resume_failed(response) is not None:
            raise TransferError(f"agent {self.address}: update not taken: {_describe(response)}")
        if response.status_code == 413:
            return UpdateAnswer(
                "too_large", 413, "the package exceeds the site's agent.max_update_mb"
            )
        if response.status_code in (401, 429):
            raise _refused(response, "refused the update")
        status = _json(response, "update").get("status")
        if response.status_code not in (200, 400, 409) or not isinstance(status, str):
            raise TransferError(f"agent {self.address}: update failed: {_describe(response)}")
        return UpdateAnswer(
            status, response.status_code, str(_json(response, "update").get("error", "")),
            offset or 0,
        )

    def _held(self, offer: UpdateOffer) -> int | None:
        """How many bytes of the package the agent holds from a broken upload; None from
        an agent that cannot resume uploads (older than this admin)."""
        with self._errors("update"):
            response = self._client.get("/update/upload", params={"sha256": offer.sha256},
                                        headers=self._auth())
        if response.status_code == 404:
            return None
        if response.status_code in (401, 429):
            raise _refused(response, "refused the update")
        held = _json(response, "update").get("offset")
        if response.status_code != 200 or not isinstance(held, int) or not 0 <= held <= offer.size:
            raise TransferError(f"agent {self.address}: update failed: {_describe(response)}")
        return held

    def _post_update(self, offer: UpdateOffer, offset: int | None) -> httpx.Response:
        """`POST /update` with the package from byte `offset` (None: whole, unnamed)."""
        headers = {
            **self._auth(),
            "Content-Type": "application/zip",
            "X-Update-Version": offer.version,
            "X-Manifest-Signature": offer.signature_b64,
            "Content-Length": str(offer.size - (offset or 0)),
        }
        if offset is not None:
            headers |= {"X-Upload-SHA256": offer.sha256, "X-Upload-Length": str(offer.size),
                        "X-Upload-Offset": str(offset)}
        with self._errors("update"), offer.path.open("rb") as package:
            package.seek(offset or 0)
            return self._client.post("/update", content=_pieces(package),
                                     timeout=self._waiting(), headers=headers)

    def _challenge(self) -> tuple[str, str, str]:
        """Nonce, agent time, and the fingerprint of the certificate on this very connection."""
        with self._errors("challenge"), self._client.stream("GET", "/auth/challenge") as response:
            fingerprint = self._peer_fingerprint(response)
            response.read()
        if response.status_code != 200:
            raise _refused(response, "refused a challenge")
        body = _json(response, "challenge")
        nonce, agent_time = body.get("nonce"), body.get("agent_time")
        if not isinstance(nonce, str) or not isinstance(agent_time, str):
            raise TransferError(f"agent {self.address}: /auth/challenge lacks nonce or agent_time")
        return nonce, agent_time, fingerprint

    def _peer_fingerprint(self, response: httpx.Response) -> str:
        ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
        fingerprint = fingerprint_der(ssl_object.getpeercert(True))
        if not hmac.compare_digest(
            fingerprint, self._pinned.sha256
        ):  # the pin makes this unreachable
            raise CertificateChangedError(
                f"agent {self.address} presented SHA256 {fingerprint}, pinned {self._pinned.sha256}"
            )
        return fingerprint

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _waiting(self) -> httpx.Timeout:
        """Until the answer's headers: the agent may work for minutes before it can answer."""
        stall = self._timeouts.stall_s
        return httpx.Timeout(
            connect=self._timeouts.connect_s, read=self._timeouts.wait_s, write=stall, pool=stall
        )

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn httpx's exceptions into the admin's four kinds of failure."""
        try:
            yield
        except TransportError:
            raise
        except httpx.ConnectError as e:
            if _is_verify_failure(e):
                raise CertificateChangedError(
                    f"agent {self.address} stopped presenting the pinned certificate "
                    f"(SHA256 {self._pinned.sha256}) during the session; re-run to see the new one"
                ) from e
            raise UnreachableError(f"cannot connect to agent {self.address}: {e}") from e
        except httpx.ConnectTimeout as e:
            raise UnreachableError(
                f"agent {self.address}: connect timed out after {self._timeouts.connect_s:g} s"
            ) from e
        except httpx.TimeoutException as e:
            raise TransferError(
                f"agent {self.address}: {what} stalled (no data for {self._timeouts.stall_s:g} s)"
            ) from e
        except httpx.RemoteProtocolError as e:  # what a dead link the kernel gave up on looks like
            raise TransferError(
                f"agent {self.address}: {what} broken: {e} "
                "(the agent closed the connection, or the link to it failed)"
            ) from e
        except httpx.HTTPError as e:
            raise TransferError(
                f"agent {self.address}: {what} broken: {e or type(e).__name__}"
            ) from e


def _resumed_at(headers: httpx.Headers, announced: Announced, resume: ResumePoint | None,
                address: str) -> int:
    """Where a 206 answer's body starts: exactly where `resume` asked, or it is refused.

    Raises: TransferError for a range that was not asked for or does not add up.
    """
    found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers.get("Content-Range", "").strip())
    start, last, total = (int(n) for n in found.groups()) if found else (-1, -1, -1)
    asked = resume is not None and start == resume.offset
    if not asked or last != total - 1 or total - start != announced.length:
        raise TransferError(f"agent {address}: export answered a range that was not asked for "
                            f"(Content-Range {headers.get('Content-Range', '')[:60]!r})")
    return start


def _resume_failed(response: httpx.Response) -> int | None:
    """The offset a `resume_failed` answer says the agent holds, else None."""
    if response.status_code != 409:
        return None
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and body.get("status") == "resume_failed" and \
                isinstance(body.get("offset"), int):
            return int(body["offset"])
    return None


def _pieces(package: BinaryIO) -> Iterator[bytes]:
    """The package in `LINK_PIECE`s: each socket write must finish within the stall
    timeout, and a piece of httpx's 64 KiB took longer than that over a slow uplink that
    was still flowing (below ~9 kbit/s at the default 60 s)."""
    while piece := package.read(LINK_PIECE):
        yield piece


def _limit_stalls(response: httpx.Response, stall_s: float) -> None:
    """From now on a read waits at most `stall_s`: the body should flow without pauses.

    httpcore reads the request's timeout dict when the body iteration starts, so
    lowering it here (after the long wait for the headers) bounds every body read.
    """
    response.request.extensions["timeout"]["read"] = stall_s


def _is_verify_failure(error: BaseException) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _refused(response: httpx.Response, what: str) -> AuthRefusedError:
    host = response.request.url.netloc.decode("ascii", "replace")
    if response.status_code == 429:
        retry = response.headers.get("Retry-After", "?")
        return AuthRefusedError(f"agent {host} {what}: too many attempts, retry after {retry} s")
    hint = (
        " (is this admin's public key in the site's trusted_keys?)"
        if response.status_code == 401
        else ""
    )
    return AuthRefusedError(f"agent {host} {what}: {_describe(response)}{hint}")


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as e:
        raise TransferError(
            f"{what}: the agent answered {response.status_code} without JSON"
        ) from e
    if not isinstance(body, dict):
        raise TransferError(
            f"{what}: the agent answered {response.status_code} with {type(body).__name__}"
        )
    return body


def _describe(response: httpx.Response) -> str:
    """`401 invalid signature` from the status and the JSON error, if any."""
    detail = ""
    with contextlib.suppress(ValueError, AttributeError):
        body = response.json()
        detail = str(body.get("error") or body.get("status") or "")
    return f"{response.status_code} {detail or response.reason_phrase}".strip()
