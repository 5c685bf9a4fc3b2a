"""The demo's script: build, start, push, confirm (or wait for the operator), show, stop.

Every step uses the product's own parts as a plant would meet them: the watchdog
process owns the site and its embedded database, the admin's push goes over TLS to
the agent, and the update is confirmed through the portal's HTTP API. `--auto`
plays the operator; otherwise a person does, in a browser.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from autotel.admin.push import PushRequest, PushResult, push
from autotel.config import Config
from autotel.demo.portal_client import PortalClient
from autotel.demo.site_process import SiteProcess, port_open
from autotel.demo.world import HOST, MIGRATION, NEW_SENSOR, NEW_VERSION, DemoWorld, build_world
from autotel.errors import AutotelError, StateError
from autotel.spool.queue import read_job_record
from autotel.watchdog.statusfile import pid_alive, read_services

Say = Callable[[str], None]
START_TIMEOUT_S = 90.0
APPLY_TIMEOUT_S = 90.0
FIRST_READINGS = 4


def run_demo(world_root: Any, *, auto: bool, say: Say, stop: threading.Event) -> None:
    """Run the whole cycle in the empty folder `world_root`; the site is stopped whatever happens.

    Raises:
        AutotelError: a step failed (the message says which, and where its log is).
        KeyboardInterrupt: the operator stopped an `--auto` run.
    """
    started = time.monotonic()
    say(f"autotel demo in {world_root}")
    say("  admin: generating a key pair; plant: creating a licensed site with a simulated collector")
    world = build_world(world_root)
    site = SiteProcess(world.config, world.root / "watchdog.log")
    site.start()
    try:
        _wait_until_ready(world, site, stop)
        result = _push(world, say)
        if auto:
            _confirm_through_portal(world, site, say, stop)
            _summary(world, result, say, time.monotonic() - started)
        else:
            _wait_for_operator(world, site, say, stop)
    finally:
        say("stopping the site: services, then the embedded database ...")
        code = site.stop()
        say("site stopped" if code == 0 else f"the watchdog ended with code {code}; see {site.log_path}")


def _wait_until_ready(world: DemoWorld, site: SiteProcess, stop: threading.Event) -> None:
    config = world.config
    site.wait_until(lambda: _services_spawned(config), START_TIMEOUT_S,
                    "the watchdog to start the embedded database and the services", stop)
    site.wait_until(lambda: port_open(HOST, config.agent.port) and port_open(HOST, config.portal.port),
                    START_TIMEOUT_S, "the agent and the portal to listen", stop)
    site.wait_until(lambda: _count(config, "SELECT count(*) FROM readings") >= FIRST_READINGS,
                    START_TIMEOUT_S, "the collector's first readings", stop)


def _push(world: DemoWorld, say: Say) -> PushResult:
    say(f"  admin: autotel push --host {HOST} --port {world.config.agent.port} "
        f"--client-id {world.config.client_id} --update {world.package.name}")
    result = push(PushRequest(host=HOST, client_id=world.config.client_id, port=world.config.agent.port,
                              key_path=world.private_key, storage=world.storage, update=world.package),
                  notice=lambda text: say(f"    {text}"))
    if result.update is None or not result.update.accepted:
        status = result.update.status if result.update else "not sent"
        raise StateError(f"the site did not take update v{NEW_VERSION}: {status}")
    say(f"    {result.export.records} readings pulled into {result.export.archive}; "
        f"update v{result.update_version}: {result.update.status}")
    return result


def _confirm_through_portal(world: DemoWorld, site: SiteProcess, say: Say, stop: threading.Event) -> None:
    with PortalClient(world.portal_url) as portal:
        portal.login(world.pin)
        status = portal.status()
        if status.get("pending_version") != NEW_VERSION:
            raise StateError(f"the portal shows no pending v{NEW_VERSION}: {status}")
        job_id = portal.apply(str(status["sha256"]))
    say(f"  operator (--auto): signed in at {world.portal_url}, confirmed v{NEW_VERSION} (job {job_id})")
    site.wait_until(lambda: _job_done(world.config, job_id), APPLY_TIMEOUT_S, f"apply job {job_id}", stop)
    site.wait_until(lambda: _restarted(world.config), APPLY_TIMEOUT_S,
                    "the watchdog to restart every service", stop)
    site.wait_until(lambda: port_open(HOST, world.config.portal.port), APPLY_TIMEOUT_S,
                    "the restarted portal", stop)
    with PortalClient(world.portal_url) as portal:
        portal.login(world.pin)
        current = portal.status().get("current_version")
    if current != NEW_VERSION:
        raise StateError(f"after the restart the portal reports v{current}, expected v{NEW_VERSION}")
    site.wait_until(lambda: _count(world.config, "SELECT count(*) FROM readings WHERE sensor = %s",
                                   NEW_SENSOR) > 0,
                    APPLY_TIMEOUT_S, f"the restarted collector's first {NEW_SENSOR} reading", stop)


def _wait_for_operator(world: DemoWorld, site: SiteProcess, say: Say, stop: threading.Event) -> None:
    say("")
    say(f"  Operator portal: {world.portal_url}")
    say(f"  PIN:             {world.pin}")
    say(f"  Sign in, open the badge 'Отримано оновлення v{NEW_VERSION}' and press 'Застосувати' "
        f"(in English: {world.portal_url}?lang=en).")
    say("  Press Ctrl+C to stop the demo.")
    applied = False
    while not stop.wait(0.5):
        site.check_alive()
        if not applied and world.config.state.installed_version() == NEW_VERSION and _restarted(world.config):
            applied = True
            say(f"  update applied: the site now runs v{NEW_VERSION}; the watchdog restarted its services")


def _summary(world: DemoWorld, result: PushResult, say: Say, seconds: float) -> None:
    config = world.config
    limits = _count(config, "SELECT count(*) FROM alarm_limits")
    new_readings = _count(config, "SELECT count(*) FROM readings WHERE sensor = %s", NEW_SENSOR)
    names = ", ".join(entry["name"] for entry in _services(config))
    say("")
    version = config.state.installed_version()
    delivered = result.update.status if result.update else "-"
    say(f"demo finished in {seconds:.1f} s: site {config.client_id} now runs v{version}")
    say(f"  readings pushed:   {result.export.records} -> {result.export.archive}")
    say(f"  update:            v{result.update_version} delivered ({delivered}), "
        "confirmed through the portal, applied")
    say(f"  services:          {names} restarted by the watchdog")
    say(f"  changed file:      collector.json -> {new_readings} {NEW_SENSOR} readings since the restart")
    say(f"  migration:         {MIGRATION} -> {limits} alarm limits")


def _services(config: Config) -> list[dict[str, Any]]:
    return list((read_services(config.state) or {}).get("services") or [])


def _services_spawned(config: Config) -> bool:
    entries = _services(config)
    return bool(entries) and all(e["state"] in ("STARTING", "RUNNING") for e in entries)


def _restarted(config: Config) -> bool:
    """Every service runs again after the update's restart, and the flag is gone."""
    entries = _services(config)
    return (not config.state.restart_flag.exists() and bool(entries)
            and all(e["state"] in ("STARTING", "RUNNING") and e["spawns"] >= 2
                    and e.get("pid") and pid_alive(int(e["pid"])) for e in entries))


def _job_done(config: Config, job_id: str) -> bool:
    """Raises: StateError when the apply job failed (with its reason)."""
    name = f"{job_id}.json"
    if (config.state.job_dir("failed") / name).exists():
        job = read_job_record(config.state.job_dir("failed") / name, "failed")
        raise StateError(f"the update was not applied: {job.get('error')}")
    return (config.state.job_dir("done") / name).exists()


def _count(config: Config, sql: str, *params: Any) -> int:
    """One number from the site database; 0 while it is not reachable or the table is missing."""
    import psycopg

    from autotel.db import connect

    try:
        with connect(config) as conn:
            row = conn.execute(sql, params).fetchone()
    except (AutotelError, psycopg.Error):
        return 0
    return int(row[0]) if row else 0
