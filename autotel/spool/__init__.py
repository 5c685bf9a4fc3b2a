"""The job spool: job files moving through `queue/ → running/ → done/ | failed/`.

Maildir-style: submit = write under `jobs/tmp/` and rename into `queue/`; claim =
rename into `running/`; finish = rename into `done/` or `failed/`. A file keeps its
name, and names sort in submission order.
"""
