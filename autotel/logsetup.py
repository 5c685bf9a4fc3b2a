"""Logging for the long-running services: stderr plus a file under `state/logs/`."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(logs_dir: Path, service: str, level: int = logging.INFO) -> None:
    logs_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(level)
    # the runner watches its queue and the agent each job it waits for: one line per
    # file event ("1 change detected") would bury what the log is read for
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(stream)
    rotating = logging.handlers.RotatingFileHandler(
        logs_dir / f"{service}.log", maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8"
    )
    rotating.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(rotating)
