"""`autotel agent`: the agent in the foreground until SIGTERM, SIGINT or Ctrl+Break."""

from __future__ import annotations

import logging
import threading

import typer

from autotel import logsetup
from autotel.cli._common import site_config
from autotel.cli._panels import SERVICES
from autotel.cli.runner import install_stop_handlers

log = logging.getLogger("autotel.agent")


def register(app: typer.Typer) -> None:
    @app.command("agent", rich_help_panel=SERVICES)
    def agent(ctx: typer.Context) -> None:
        """Serve the admin's sessions over HTTPS, default port 9876 (auth, export, updates)."""
        from autotel.export.mark import check_at_start
        from autotel.web.agent import agent_fingerprint, build_agent, sweep_stale_uploads

        config = site_config(ctx)
        logsetup.configure(config.state.logs, "agent")
        handle = build_agent(config)
        sweep_stale_uploads(config)  # before serving: no upload is in progress yet
        stop = threading.Event()
        install_stop_handlers(stop)
        handle.start_background()
        # A restored database is noticed now, before its counter passes the export mark;
        # on a thread, so a database that is slow to start never delays serving.
        threading.Thread(target=check_at_start, args=(config,), name="mark-check", daemon=True).start()
        log.info(
            "agent listening on https://%s:%d, certificate SHA-256 %s",
            config.agent.host,
            handle.port,
            agent_fingerprint(config),
        )
        try:
            while not stop.wait(0.5):  # the handlers only set the flag; stop here, not in them
                pass
        finally:
            handle.stop()
            log.info("agent stopped")
