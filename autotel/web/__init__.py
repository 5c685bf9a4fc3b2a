"""HTTP services: the agent (TLS, for the admin) and the portal (for the operator)."""
