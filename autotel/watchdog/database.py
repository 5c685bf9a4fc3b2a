"""The watchdog owns the embedded PostgreSQL: it starts it before the services and stops it last.

pgserver keeps running when its owner is killed and counts its users by pid, so one
long-lived process must start and stop it; the services only attach to it. A site
with a configured DSN has its database managed elsewhere, and the watchdog leaves it
alone (its migrations are `autotel db migrate`'s job).
"""

from __future__ import annotations

import logging

from autotel.config import Config

log = logging.getLogger("autotel.watchdog")


def is_embedded(config: Config) -> bool:
    return not config.database.dsn.get_secret_value().strip()


def start_embedded_database(config: Config) -> None:
    """Start the embedded server and bring the site schema up to date.

    Raises:
        DatabaseError: the server does not start or a migration is refused.
    """
    from autotel.db import dsn_for
    from autotel.db.migrate import migrate_site

    dsn_for(config)
    applied = migrate_site(config)
    log.info("embedded database running under %s; migrations applied: %s",
             config.state.pgdata, ", ".join(applied) or "none (up to date)")


def stop_embedded_database(config: Config) -> None:
    from autotel.db import stop_embedded

    stop_embedded(config)
    log.info("embedded database stopped")
