"""Exporting `readings` for the admin: cursors, the streamed COPY and the archives.

The step (`autotel.steps.export`) runs it inside the runner; the agent only parses
the request (`cursor`), then serves the archive the step wrote.
"""
