"""`autotel push`: the admin pulls a site's readings and optionally delivers an update."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotel.admin.push import PushRequest, PushResult, push
from autotel.admin.session import Timeouts, UpdateAnswer
from autotel.cli._common import say
from autotel.errors import AutotelError, PackageError, SignatureError


def register(app: typer.Typer) -> None:
    app.command("push")(push_command)


def push_command(
    host: Annotated[str, typer.Option(help="The site's address")],
    client_id: Annotated[str, typer.Option(help="The site's client id; names its archive folder")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="The agent's port")] = 9876,
    update: Annotated[Path | None, typer.Option(help="An update_vX.Y.Z.zip to deliver")] = None,
    key: Annotated[Path, typer.Option(help="The admin's private key")] = Path("private.pem"),
    storage: Annotated[Path, typer.Option(help="Archives, cursors and pinned certificates")] = Path(
        "data_storage"
    ),
    accept_cert: Annotated[
        str | None,
        typer.Option(help="Accept this new SHA-256 certificate fingerprint of the agent"),
    ] = None,
    connect_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to connect")] = 10.0,
    stall_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds without data before a transfer counts as broken")
    ] = 60.0,
) -> None:
    """One session with a site's agent: sign in, pull new readings, deliver an update."""
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
    result = push(request, notice=say)
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
        if result.update.status == "same_version" and result.update.error:
            # the site may hold another package of this version: say which, and what to do
            line += f" ({result.update.error})"
    return line


def _update_refused(answer: UpdateAnswer, version: str) -> AutotelError:
    detail = f": {answer.error}" if answer.error else ""
    message = f"the site refused update v{version}: {answer.status}{detail}"
    return SignatureError(message) if answer.status == "invalid_sig" else PackageError(message)
