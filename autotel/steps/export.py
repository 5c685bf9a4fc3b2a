"""`export`: write the readings a request selects into an archive in `state/exports/`.

Params (set by the agent from `GET /data/export`): `since` (ISO 8601) or
`after` (the snapshot inside the admin's cursor, `xmin:xmax:xip`), or neither for
every row.
Before each export the database is compared with the site's export mark
(`state/export_mark.json`, `autotel.export.mark`); a cursor that no longer fits
(re-created or restored database) gets every row, and the result's `reset` says why.
The result names the archive with its size, SHA-256, record count, period end and
next cursor; the agent serves exactly that file. Re-running it after a crash simply
makes a new archive from a new snapshot, which is as correct as the first would be.
"""

from __future__ import annotations

from typing import Any

from autotel.db import dsn_for
from autotel.errors import JobError
from autotel.export.cursor import BadExportRequest, ExportRequest
from autotel.export.mark import MarkStore
from autotel.export.writer import export_readings
from autotel.steps import step
from autotel.steps.context import StepContext


@step("export")
def export(ctx: StepContext) -> dict[str, Any]:
    try:
        request = ExportRequest.from_params(ctx.params)
    except BadExportRequest as e:
        raise JobError(f"export job {ctx.job.get('id')}: {e}") from None
    ctx.progress(0.0, "Експорт даних")
    result = export_readings(
        dsn_for(ctx.config), ctx.state.exports, request, marks=MarkStore(ctx.state.root)
    )
    ctx.progress(1.0, f"Експортовано записів: {result.records}")
    return result.as_dict()
