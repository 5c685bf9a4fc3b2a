"""`autotel portal`: the operator page and update API in the foreground."""

from __future__ import annotations

import logging
import threading

import typer

from autotel import logsetup
from autotel.cli._common import site_config
from autotel.cli._panels import SERVICES
from autotel.cli.runner import install_stop_handlers
from autotel.errors import ConfigError

log = logging.getLogger("autotel.portal")

# Signal handlers only set a flag; the main thread checks it this often.
WAKE_S = 0.5


def register(app: typer.Typer) -> None:
    app.command("portal", rich_help_panel=SERVICES)(portal)


def portal(ctx: typer.Context) -> None:
    """Serve the operator page (default port 8000) until SIGTERM, SIGINT or Ctrl+Break."""
    from autotel.web.portal import build_portal

    config = site_config(ctx)
    logsetup.configure(config.state.logs, "portal")
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        handle = build_portal(config).start_background()
    except OSError as e:
        raise ConfigError(
            f"portal cannot listen on {config.portal.host}:{config.portal.port} ({e}); "
            "is another portal running? change portal.port in autotel.yaml"
        ) from None
    scheme = "https" if config.portal.tls else "http"
    log.info("portal for %s at %s://%s:%d/", config.client_id, scheme, config.portal.host,
             handle.port)
    try:
        while not stop.wait(WAKE_S):
            pass
    finally:
        handle.stop()
        log.info("portal stopped")
