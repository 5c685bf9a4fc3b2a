"""`autotel push`: the admin pulls a site's readings and optionally delivers an update."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotel.admin.push import PushRequest, PushResult, push_retrying
from autotel.admin.session import Timeouts, UpdateAnswer
from autotel.cli._common import say
from autotel.cli._panels import ADMIN
from autotel.errors import AutotelError, PackageError, SignatureError
from autotel.fsutil import megabytes


def register(app: typer.Typer) -> None:
    app.command("push", rich_help_panel=ADMIN)(push_command)


def push_command(
    host: Annotated[str, typer.Option(help="The site's IP address or host name")],
    client_id: Annotated[str, typer.Option(
        help="The site's client_id (as in its autotel.yaml); names its archive folder")],
    port: Annotated[int, typer.Option(
        min=1, max=65535, help="The agent's port (the site's agent.port)")] = 9876,
    update: Annotated[Path | None, typer.Option(help="An update_vX.Y.Z.zip to deliver")] = None,
    key: Annotated[Path, typer.Option(help="The admin's private key")] = Path("private.pem"),
    storage: Annotated[Path, typer.Option(help=(
        "Archives, cursors and pinned certificates; use the same folder for every push "
        "(a new one starts over: every row again, certificates pinned anew)"))] = Path(
        "data_storage"
    ),
    accept_cert: Annotated[
        str | None,
        typer.Option(help=(
            "Accept the agent's new certificate with this SHA-256 fingerprint (check it "
            "first on the site: autotel status)")),
    ] = None,
    connect_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to connect")] = 10.0,
    stall_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds without data before a transfer counts as broken")
    ] = 60.0,
    retries: Annotated[int, typer.Option(min=0, max=100, help=(
        "After the network failed the push (exit 11 or 14), try again this many times; "
        "a broken download goes on where it stopped"))] = 0,
    retry_wait: Annotated[float, typer.Option(min=0.0, help=(
        "Seconds before the first retry; each next wait doubles (at most 300)"))] = 10.0,
) -> None:
    """One session with a site's agent: sign in, pull new readings, deliver an update.

    Exit 0 when done (an update the site already has included); 2 bad command line or
    key file; 3/4 update refused; 7 another push of this
    client runs, or the storage is unusable; 11 unreachable; 12 certificate changed; 13
    sign-in refused (key not trusted, or too many sign-ins a minute); 14 transfer broken.
    A failed push loses no readings: run it again (a broken download resumes).
    """
    request = PushRequest(
        host=host,
        client_id=client_id,
        port=port,
        key_path=key,
        storage=storage,
        update=update,
        accept_cert=accept_cert,
        timeouts=Timeouts(connect_s=connect_timeout, stall_s=stall_timeout),
    )
    result = push_retrying(request, retries, retry_wait, notice=say)
    say(summary(result))
    if result.update is not None and not result.update.accepted:
        raise _update_refused(result.update, result.update_version or "?")


def summary(result: PushResult) -> str:
    """One line: what arrived, where it is, and what the site said about the update."""
    export = result.export
    archive = str(export.archive) if export.archive else "none (no new records)"
    line = (
        f"push {result.address}: {export.records} records, {export.size} bytes, "
        f"{result.seconds:.1f} s, archive {archive}"
    )
    if result.update is not None:
        line += f", update v{result.update_version}: {result.update.status}"
        if result.update.resumed_from:
            line += f" (resumed: {megabytes(result.update.resumed_from)} had arrived before)"
        if result.update.status == "same_version" and result.update.error:
            # the site may hold another package of this version: say which, and what to do
            line += f" ({result.update.error})"
    return line


def _update_refused(answer: UpdateAnswer, version: str) -> AutotelError:
    detail = f": {answer.error}" if answer.error else ""
    message = f"the site refused update v{version}: {answer.status}{detail}"
    return SignatureError(message) if answer.status == "invalid_sig" else PackageError(message)
