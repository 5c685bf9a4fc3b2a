"""`autotel watchdog`: licence check, then the site's services under supervision."""

from __future__ import annotations

import logging
import threading

import typer

from autotel import logsetup
from autotel.cli._common import site_config
from autotel.cli._panels import SITE
from autotel.cli.runner import install_stop_handlers
from autotel.licensing.files import check_site_license
from autotel.lockfile import ProcessLock

log = logging.getLogger("autotel.watchdog")


def register(app: typer.Typer) -> None:
    app.command("watchdog", rich_help_panel=SITE)(watchdog)


def watchdog(ctx: typer.Context) -> None:
    """Check the licence, then run and supervise runner, agent, portal and the collector.

    Runs in the foreground until Ctrl+C (Ctrl+Break on Windows) or SIGTERM; start it at
    boot. It needs license.dat in the install directory. With the embedded database (no
    DSN) it starts that first and brings autotel's tables up to date. Logs: state/logs/.
    """
    from autotel.watchdog.database import (
        is_embedded,
        start_embedded_database,
        stop_embedded_database,
    )
    from autotel.watchdog.orphans import stop_orphans
    from autotel.watchdog.process import SubprocessLauncher
    from autotel.watchdog.services import service_specs
    from autotel.watchdog.statusfile import watchdog_lock_file
    from autotel.watchdog.supervisor import Supervisor

    config = site_config(ctx)
    lic = check_site_license(config)
    specs = service_specs(config)
    config.state.create()
    with ProcessLock(watchdog_lock_file(config.state), "watchdog"):
        logsetup.configure(config.state.logs, "watchdog")
        logging.getLogger("pgserver").setLevel(logging.WARNING)  # its INFO is pages of initdb output
        log.info("licence valid for %s through %s", lic.client_id, lic.expires.isoformat())
        stop = threading.Event()
        install_stop_handlers(stop)
        stop_orphans(config.state, specs, config.watchdog.stop_timeout_s)  # before migrations run
        embedded = is_embedded(config)
        if embedded:
            start_embedded_database(config)
        try:
            Supervisor(config, specs, SubprocessLauncher(), stop).run()
        finally:
            if embedded:
                stop_embedded_database(config)
        log.info("watchdog stopped")
