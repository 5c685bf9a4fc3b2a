"""autotel: keeps industrial telemetry sites in sync with a central admin server."""

__version__ = "1.0.0"
