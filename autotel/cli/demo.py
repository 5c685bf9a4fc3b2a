"""`autotel demo [--auto] [--dir DIR]`: the whole cycle on this machine, no configuration needed."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import typer

from autotel.cli._common import say
from autotel.cli._panels import TRY
from autotel.cli.runner import install_stop_handlers
from autotel.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("demo", rich_help_panel=TRY)(demo)


def demo(
    auto: Annotated[bool, typer.Option(help="Play the operator too: confirm the update, then exit")] = False,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Build the demo here and keep it (default: a temporary folder, removed at the end)",
    )] = None,
) -> None:
    """The whole cycle on this machine: a site with a simulated collector, a push with data and an update.

    Then the portal's address and PIN for the operator (Ctrl+C stops everything);
    --auto confirms the update itself and exits 0 when the new version runs.
    """
    from autotel.demo.run import run_demo

    root = _prepare(directory)
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        run_demo(root, auto=auto, say=say, stop=stop)
    finally:
        if directory is None:
            shutil.rmtree(root, ignore_errors=True)
            say(f"removed {root} (run `autotel demo --dir DIR` to keep the demo's files)")


def _prepare(directory: Path | None) -> Path:
    """Raises: ConfigError when `--dir` names a folder that is not empty."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="autotel-demo-"))
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"--dir {directory}: not empty; give a new or empty folder")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
