"""`autotel db migrate`, `autotel db stop`: the site database from the command line."""

from __future__ import annotations

import typer

from autotel.cli._common import say, site_config
from autotel.cli._panels import SITE

db_app = typer.Typer(no_args_is_help=True, help="The site database.")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db", rich_help_panel=SITE)


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Create or update autotel's own tables (readings) in the site database.

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
    """Stop the embedded PostgreSQL (stop the site's services first; they need it)."""
    from autotel.db.connection import configured_dsn, stop_embedded

    config = site_config(ctx)
    if configured_dsn(config):
        say("this site uses an external database (database.dsn); nothing to stop")
        return
    stop_embedded(config)
    say("the embedded database is stopped")
