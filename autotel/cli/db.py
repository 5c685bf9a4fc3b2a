"""`autotel db migrate`, `autotel db stop`: the site database from the command line."""

from __future__ import annotations

import typer

from autotel.cli._common import say, site_config
from autotel.cli._panels import SITE
from autotel.errors import StateError
from autotel.lockfile import ProcessLock

db_app = typer.Typer(no_args_is_help=True, help="The site database.")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db", rich_help_panel=SITE)


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Create or update autotel's own tables (readings, export_witness) in the site database.

    The watchdog does it itself for the embedded database; run it once after `init --dsn`.
    Update packages bring their migrations with them.
    """
    from autotel.db.migrate import bundled_migrations, migrate_site

    applied = migrate_site(site_config(ctx))
    for name in applied:
        say(f"applied {name}")
    if not applied:
        say(f"the database schema is up to date (migrations applied: {len(bundled_migrations())})")


@db_app.command("stop")
def db_stop(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL that a stopped or killed watchdog left running."""
    from autotel.db.connection import configured_dsn, stop_embedded
    from autotel.watchdog.statusfile import watchdog_lock_file

    config = site_config(ctx)
    if configured_dsn(config):
        say("this site uses an external database (database.dsn); nothing to stop")
        return
    if ProcessLock(watchdog_lock_file(config.state), "watchdog").is_held_elsewhere():
        # its services would start the database again on their next query
        raise StateError("the watchdog of this site is running and owns the embedded database; "
                         "stop the watchdog instead: it stops the database last")
    stop_embedded(config)
    say("the embedded database is stopped")
