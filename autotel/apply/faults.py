"""A test seam: halt or fail the apply at a named point.

Crash tests must kill a real runner at every step boundary and in the middle of
the patch, as Mender's state tests kill the client in every state. Watching files
from the test cannot hit "after the third of 1,000 renames" reliably, so the apply
code names its points (`patch:replaced:3`, `migrate:end`, …):

- `AUTOTEL_TEST_APPLY_HALT_AT=<point>`: at that point the worker writes the point's
  name to `state/run/apply-halted.txt` and sleeps until killed; the test waits for
  that file, then SIGKILLs the runner (its step worker exits with it).
- `AUTOTEL_TEST_APPLY_FAIL_AT=<point>`: at that point the step raises, for failures
  that cannot be provoked from outside (e.g. after the migrations were committed).

Production never sets these variables; unset, a point costs two dict lookups.
"""

from __future__ import annotations

import os
import time

from autotel.errors import StateError
from autotel.fsutil import atomic_write_text
from autotel.state import StatePaths

HALT_ENV = "AUTOTEL_TEST_APPLY_HALT_AT"
FAIL_ENV = "AUTOTEL_TEST_APPLY_FAIL_AT"
HALTED_FILE = "apply-halted.txt"


def fault_point(state: StatePaths, point: str) -> None:
    """If the test seam names `point`, fail here, or announce it and wait to be killed."""
    if os.environ.get(FAIL_ENV) == point:
        raise StateError(f"failure injected by the test seam at {point}")
    if os.environ.get(HALT_ENV) != point:
        return
    state.run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(state.run / HALTED_FILE, point + "\n")
    while True:
        time.sleep(3600)
