"""A simulated collector: writes a few readings per second into the site's `readings` table.

`python -m autotel.demo.collector [--config autotel.yaml]` (default: `AUTOTEL_CONFIG`,
as the watchdog sets it). Which sensors it simulates comes from `collector.json` in the
install directory, read once at start, so an update that changes that file shows
after the watchdog restarts the collector. Like a real collector it survives a
database that is not there yet: it retries the connection until stopped. It stands
apart from autotel's CLI (imports only config and db), as a site's own program would.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from autotel.config import Config, config_path_from, load_config
from autotel.errors import AutotelError

log = logging.getLogger("autotel.demo.collector")

SETTINGS_FILE = "collector.json"
RETRY_S = 1.0


def load_settings(config: Config) -> dict[str, Any]:
    """`collector.json`: `{"interval_s": 0.5, "sensors": [{"name", "base", "swing"}]}`."""
    path = config.install_path / SETTINGS_FILE
    settings: dict[str, Any]
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        settings = {}
    settings.setdefault("interval_s", 0.5)
    settings.setdefault("sensors", [{"name": "temperature", "base": 21.5, "swing": 1.5}])
    return settings


def simulated_value(sensor: dict[str, Any], moment: float) -> float:
    """A smooth, plausible signal: base plus a slow sine of amplitude `swing`."""
    return round(float(sensor.get("base", 0.0)) + float(sensor.get("swing", 1.0)) * math.sin(moment / 7.0), 3)


def collect(config: Config, stop: threading.Event) -> None:
    """Insert one reading per sensor every `interval_s` until `stop` is set."""
    from autotel.db import connect

    settings = load_settings(config)
    sensors = [s["name"] for s in settings["sensors"]]
    log.info("collector started: sensors %s every %g s", ", ".join(sensors), settings["interval_s"])
    while not stop.is_set():
        try:
            with connect(config, autocommit=True) as conn:
                while not stop.wait(settings["interval_s"]):
                    moment = time.time()
                    for sensor in settings["sensors"]:
                        conn.execute("INSERT INTO readings (time, sensor, value) VALUES (now(), %s, %s)",
                                     (sensor["name"], simulated_value(sensor, moment)))
        except (AutotelError, OSError) as e:
            log.warning("database not available (%s); retrying in %g s", e, RETRY_S)
        except psycopg.Error as e:  # a restarted server or a lost connection: keep collecting
            log.warning("write failed (%s: %s); reconnecting in %g s", type(e).__name__, e, RETRY_S)
        stop.wait(RETRY_S)
    log.info("collector stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m autotel.demo.collector", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="the site's autotel.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):  # only set a flag; the loop checks it
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda signum, frame: stop.set())
    try:
        collect(load_config(config_path_from(args.config)), stop)
    except AutotelError as e:
        raise SystemExit(f"collector: error: {e}") from None


if __name__ == "__main__":
    main()
