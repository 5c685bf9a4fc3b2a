"""Steps: the small functions job kinds are made of, registered by name.

Every module in this package is imported by `load_steps()`, so a new step is a new
module with `@step("name")` on a function `(ctx: StepContext) -> dict | None`.
A step must be idempotent: it may be run again after a crash, so it checks what is
already done, does the rest, and records its result as its last act.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from autotel.steps.context import StepContext

StepFunc = Callable[[StepContext], "dict[str, Any] | None"]
F = TypeVar("F", bound=StepFunc)
_REGISTRY: dict[str, StepFunc] = {}
log = logging.getLogger("autotel.steps")


def step(name: str) -> Callable[[F], F]:
    """Register the decorated function as step `name`; it keeps its own signature, so a
    test that calls it directly sees what it returns."""

    def register(func: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not func:
            raise RuntimeError(f"step {name!r} is registered twice")
        _REGISTRY[name] = func
        return func

    return register


def load_steps() -> dict[str, StepFunc]:
    """Import every step module; one that fails to import is logged and left out.

    A broken module (say, after a bad patch) must not stop the runner: the kinds that
    use its steps fail with "unknown step", every other kind keeps working.
    """
    for module in pkgutil.iter_modules(__path__):
        if module.name == "context":
            continue
        try:
            importlib.import_module(f"{__name__}.{module.name}")
        except Exception:
            log.exception("step module %s cannot be imported; its steps are unavailable", module.name)
    return dict(_REGISTRY)
