"""The embedded PostgreSQL: started on demand, shared by processes, survives `kill -9`, stopped on request.

Every test runs a real pgserver cluster in its own fresh state directory, and real
processes (`python -c`) that attach to it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import psycopg
import pytest

from autotel.config import Config, RetentionConfig
from autotel.db import connect, dsn_for, stop_embedded
from autotel.db.embedded import ServerState, classify, read_postmaster
from autotel.errors import DatabaseError
from autotel.fsutil import MB, previous_generation

# Attaches (starting the server if needed), proves it with a query, prints the URI and,
# with "hold", keeps running until its stdin closes or it is killed.
CLIENT = """
import sys
from pathlib import Path
from autotel.config import load_config
from autotel.db import connect, dsn_for
config = load_config(Path(sys.argv[1]))
with connect(config) as conn:
    assert conn.execute("SELECT 1").fetchone() == (1,)
print(dsn_for(config), flush=True)
if sys.argv[2:] == ["hold"]:
    sys.stdin.read()
"""


def _client(config: Config, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(config.config_path), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out.strip()


def _postmaster_pid(config: Config) -> int:
    info = read_postmaster(config.state.pgdata)
    assert info is not None and classify(info) is ServerState.READY
    return info.pid


def _answers(uri: str) -> bool:
    try:
        with psycopg.connect(uri, connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_start_attach_survive_kill_9_stop_and_restart(embedded_site: Config) -> None:
    config = embedded_site
    assert not config.database.dsn.get_secret_value() and not config.state.pgdata.exists()
    starter = _client(config, "hold")
    assert starter.stdout is not None
    uri = starter.stdout.readline().strip()
    assert uri, starter.stderr.read() if starter.stderr else ""
    assert (config.state.pgdata / "PG_VERSION").is_file()
    postmaster = _postmaster_pid(config)

    assert _finish(_client(config)) == uri  # a second process attaches, exits normally...
    assert _postmaster_pid(config) == postmaster and _answers(uri)  # ...and stops nothing

    starter.kill()  # SIGKILL: no atexit, no cleanup of any kind
    starter.wait(30)
    assert dsn_for(config) == uri
    with connect(config) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    stop_embedded(config)
    assert read_postmaster(config.state.pgdata) is None
    assert (
        not psutil.pid_exists(postmaster)
        or psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE
    )
    assert not _answers(uri)

    # What a power cut can leave: postmaster.pid naming a PID that now belongs to another
    # program (here: this test process). It must be cleared, and the server started anew.
    pgdata = config.state.pgdata
    (pgdata / "postmaster.pid").write_text(
        f"{os.getpid()}\n{pgdata}\n{int(time.time())}\n5432\n{pgdata}\n\n0 0\nready\n"
    )
    info = read_postmaster(pgdata)
    assert info is not None and classify(info) is ServerState.LEFTOVER
    assert _answers(dsn_for(config))  # on demand again, in a process that stopped it before
    assert _postmaster_pid(config) != os.getpid()

    # A crash of the server itself: its postmaster.pid stays behind, its backends exit
    # on their own a moment later. The next dsn_for waits for them, then starts anew.
    crashed = _postmaster_pid(config)
    os.kill(crashed, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(crashed)], timeout=30)
    assert _answers(dsn_for(config))
    assert _postmaster_pid(config) != crashed


def test_concurrent_first_starts_share_one_server_that_outlives_them(embedded_site: Config) -> None:
    # What a first start cut short by a power cut leaves: a half-made cluster in staging.
    staging = embedded_site.state.pgdata.with_name("pgdata.new")
    staging.mkdir()
    (staging / "PG_VERSION").write_text("16\n")
    (staging / "global").mkdir()
    clients = [_client(embedded_site) for _ in range(3)]
    uris = {_finish(client) for client in clients}
    assert len(uris) == 1
    postmasters = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(embedded_site.state.pgdata) in (p.info["cmdline"] or [])
    ]
    assert len(postmasters) == 1
    assert _answers(uris.pop())  # every client has exited; the server they started still runs
    assert not staging.exists()


def test_a_foreign_folder_at_pgdata_is_refused_and_kept(embedded_site: Config) -> None:
    pgdata = embedded_site.state.pgdata
    pgdata.mkdir()
    (pgdata / "notes.txt").write_text("not a database")
    with pytest.raises(DatabaseError, match="not empty but holds no PostgreSQL cluster"):
        dsn_for(embedded_site)
    assert (pgdata / "notes.txt").read_text() == "not a database"


def test_stop_embedded_is_a_no_op_when_nothing_runs(embedded_site: Config) -> None:
    stop_embedded(embedded_site)  # never started: no pgdata
    assert not embedded_site.state.pgdata.exists()


def test_the_servers_own_log_is_rotated_at_a_start_once_over_its_limit(
    embedded_site: Config,
) -> None:
    """pg_ctl appends every start, stop and checkpoint to pgdata/log for ever; a site
    restarted every night keeps it under `retention.database_log_max_mb` (plus one `.1`)."""
    limit = 20_000
    config = embedded_site.model_copy(
        update={"retention": RetentionConfig(database_log_max_mb=limit / MB)}
    )
    dsn_for(config)  # the first start makes the cluster and the log
    stop_embedded(config)
    server_log = config.state.pgdata / "log"
    with server_log.open("a") as f:  # months of checkpoints, in a moment
        f.write("2026-01-01 00:00:00.000 UTC [1] LOG:  checkpoint complete: ...\n" * 1000)
    months = server_log.read_text()
    assert len(months) > limit
    with connect(config) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert previous_generation(server_log).read_text() == months, "the old log kept as log.1"
    started = server_log.read_text()
    assert len(started) < limit and "ready to accept connections" in started
