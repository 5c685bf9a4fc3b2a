"""The job runner: executes job files from the spool, step by step, idempotently."""
