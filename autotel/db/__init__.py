"""The site database: where it is (`dsn_for`), connections (`connect`), the embedded
server's lifecycle (`stop_embedded`), and migrations (`autotel.db.migrate`)."""

from autotel.db.connection import connect, dsn_for, redact, stop_embedded

__all__ = ["connect", "dsn_for", "redact", "stop_embedded"]
