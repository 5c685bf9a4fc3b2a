"""The package's SQL migrations, handed to `autotel.db` to run in one transaction.

`autotel.db.migrate` owns the transaction and the `schema_migrations` rows; this
module only opens the connection and asks the database what is applied; reading
the migrations out of the package is `autotel.package.unpack.read_migrations`.
"""

from __future__ import annotations

from autotel.config import Config
from autotel.db import connect
from autotel.db.migrate import applied_migrations, apply_in_one_transaction


def run(config: Config, migrations: list[tuple[str, str]]) -> list[str]:
    """Apply those not yet applied, all in one transaction; return the names applied now.

    Raises:
        DatabaseError: unreachable database, or a migration failed (nothing of it is kept).
    """
    if not migrations:
        return []
    with connect(config, autocommit=True) as conn:
        return apply_in_one_transaction(conn, migrations)


def already_applied(config: Config, names: list[str]) -> list[str]:
    """Which of `names` the database has recorded as applied (no connection when empty)."""
    if not names:
        return []
    with connect(config, autocommit=True) as conn:
        applied = applied_migrations(conn)
    return [name for name in names if name in applied]
