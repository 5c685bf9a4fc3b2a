"""Keys, RSA-PSS signatures and the agent's TLS certificate."""
