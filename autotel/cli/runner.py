"""`autotel runner`: the job runner in the foreground."""

from __future__ import annotations

import signal
import threading

import typer

from autotel import logsetup
from autotel.cli._common import site_config
from autotel.cli._panels import SERVICES


def register(app: typer.Typer) -> None:
    @app.command("runner", rich_help_panel=SERVICES)
    def runner(ctx: typer.Context) -> None:
        """Run queued jobs (state/jobs/queue/) until stopped."""
        from autotel.runner.loop import Runner

        config = site_config(ctx)
        logsetup.configure(config.state.logs, "runner")
        stop = threading.Event()
        install_stop_handlers(stop)
        Runner(config, stop).run_forever()


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM / SIGINT / Ctrl+Break only set a flag; the service stops at its next check."""

    def handler(signum: int, frame: object) -> None:
        stop.set()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
