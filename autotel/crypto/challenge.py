"""The signed auth challenge: the exact bytes the admin signs and the agent verifies.

It binds the signature to the agent's timestamp, a single-use nonce and the agent
certificate the admin saw on its TLS connection, so a captured signature works
neither twice, nor on another agent, nor through a man in the middle.
"""

from __future__ import annotations

MESSAGE_PREFIX = "autotel-auth-v1"


def auth_message(timestamp: str, nonce: str, fingerprint: str) -> bytes:
    """No trailing newline (DESIGN.md, Settled details: Auth)."""
    return f"{MESSAGE_PREFIX}\n{timestamp}\n{nonce}\n{fingerprint}".encode()
