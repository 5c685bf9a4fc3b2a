"""`migrate` (apply): the package's SQL migrations, all in one transaction.

Resumable: a migration already recorded in `schema_migrations` is skipped, so a
crash after the commit only finds nothing left to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotel.apply import migrations
from autotel.apply.faults import fault_point
from autotel.apply.package import open_package
from autotel.package.unpack import read_migrations
from autotel.steps import step
from autotel.steps.context import StepContext


@step("migrate")
def migrate(ctx: StepContext) -> dict[str, Any]:
    fault_point(ctx.state, "migrate:start")
    verified = ctx.results
    package_path = Path(verified["package"])
    with open_package(package_path, verified["manifest_sha256"]) as package:
        manifest = package.manifest
    applied = migrations.run(ctx.config, read_migrations(package_path, manifest))
    fault_point(ctx.state, "migrate:end")
    return {"migrations_applied": applied}
