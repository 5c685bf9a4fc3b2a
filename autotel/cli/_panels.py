"""The groups `autotel --help` lists the commands in (where each one is run), and their order."""

from __future__ import annotations

SITE = "Site (on the plant PC)"
ADMIN = "Admin (on the admin host; license check: on the site)"
SERVICES = "Services (the watchdog runs these; run one alone to debug it)"
TRY = "Try it"

# The order of `autotel --help`: a site's life first, then the admin's routine.
ORDER = ("init", "watchdog", "status", "cert", "db", "jobs",
         "keygen", "license", "publish", "push",
         "runner", "agent", "portal", "demo")


def position(name: str | None) -> int:
    """Where command `name` goes in the help; a command not listed goes last."""
    return ORDER.index(name) if name in ORDER else len(ORDER)
