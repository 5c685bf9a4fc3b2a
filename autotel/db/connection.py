"""Where the site database is and how to open a connection to it.

`database.dsn` names a PostgreSQL server; when it is empty the site uses the
embedded one under the state directory (`autotel.db.embedded`), started on demand.
Every failure becomes a DatabaseError whose message shows the DSN without its
password.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from autotel.config import Config
from autotel.db import embedded
from autotel.errors import DatabaseError
from autotel.fsutil import MB

CONNECT_TIMEOUT_S = 10
APPLICATION_NAME = "autotel"


def dsn_for(config: Config) -> str:
    """The configured DSN, or the embedded server's URI (starting that server if needed).

    Raises:
        DatabaseError: the embedded server cannot be started.
    """
    return configured_dsn(config) or embedded.ensure_running(
        config.state.pgdata, embedded_lock_path(config), log_max_bytes=server_log_limit(config)
    )


def stop_embedded(config: Config) -> None:
    """Stop the site's embedded server if it uses one and it runs; else do nothing.

    Only the owner of the site's services (the watchdog) should call this: every
    other process leaves the server running for the rest.

    Raises:
        DatabaseError: the server could not be stopped.
    """
    if not configured_dsn(config):
        embedded.stop(config.state.pgdata, embedded_lock_path(config))


def configured_dsn(config: Config) -> str:
    """`database.dsn`, or "" when the site uses the embedded server."""
    return config.database.dsn.get_secret_value().strip()


def server_log_limit(config: Config) -> int:
    """How large the embedded server's log may grow before its next start rotates it."""
    return int(config.retention.database_log_max_mb * MB)


def embedded_lock_path(config: Config) -> Path:
    """The lock serialising start and stop of this site's embedded server (outside pgdata)."""
    return config.state.run / "pgserver.lock"


def connect(config: Config, **kwargs: Any) -> psycopg.Connection[Any]:
    """A new connection to the site database; `kwargs` go to `psycopg.connect`.

    A connection to the embedded server that fails is retried once after checking the
    server under its lock, since it may have been stopping or restarting just then.

    Raises:
        DatabaseError: unreachable server, bad DSN, refused login; the message names the
            DSN (without password) and what to check.
    """
    dsn = dsn_for(config)
    if _parse(dsn) is None:
        raise DatabaseError(
            f"database.dsn {redact(dsn)!r} is not a valid PostgreSQL connection string; expected "
            "postgresql://USER:PASSWORD@HOST:5432/DBNAME or 'host=HOST dbname=DBNAME user=USER'; "
            f"fix it in {config.config_path} (or AUTOTEL_DATABASE__DSN)"
        )
    try:
        return _open(dsn, kwargs)
    except psycopg.Error as first:
        if configured_dsn(config):
            raise _connect_error(dsn, first, _configured_hint(config)) from None
    dsn = embedded.ensure_running(config.state.pgdata, embedded_lock_path(config), recheck=True,
                                  log_max_bytes=server_log_limit(config))
    try:
        return _open(dsn, kwargs)
    except psycopg.Error as second:
        pgdata = config.state.pgdata
        hint = f"the embedded server in {pgdata} does not answer; see its log {pgdata / 'log'}"
        raise _connect_error(dsn, second, hint) from None


def _open(dsn: str, kwargs: dict[str, Any]) -> psycopg.Connection[Any]:
    params = dict(kwargs)
    given = _parse(dsn) or {}
    for key, default in (
        ("connect_timeout", CONNECT_TIMEOUT_S),
        ("application_name", APPLICATION_NAME),
    ):
        if key not in given:
            params.setdefault(key, default)
    return psycopg.connect(dsn, **params)


def _configured_hint(config: Config) -> str:
    return (
        f"check database.dsn in {config.config_path} (or AUTOTEL_DATABASE__DSN) and that "
        "PostgreSQL is running and reachable from this PC"
    )


def _connect_error(dsn: str, error: psycopg.Error, hint: str) -> DatabaseError:
    return DatabaseError(
        f"cannot connect to the site database {redact(dsn)}: {one_line(error, dsn)}; {hint}"
    )


def redact(dsn: str) -> str:
    """`dsn` without its password, safe for messages and logs."""
    parsed = _parse(dsn)
    if parsed is None:
        masked = re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", masked)
    parsed.pop("password", None)
    return make_conninfo(**parsed)


def _parse(dsn: str) -> dict[str, Any] | None:
    try:
        return conninfo_to_dict(dsn)
    except psycopg.Error:
        return None


def one_line(error: BaseException, dsn: str = "") -> str:
    """A psycopg message on one line, with any password that appears in it masked."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    password = (_parse(dsn) or {}).get("password") if dsn else None
    if not password:
        return text
    # only where it stands as a token of its own, so a short password does not mangle words
    return re.sub(rf"(?<!\w){re.escape(str(password))}(?!\w)", "***", text)
