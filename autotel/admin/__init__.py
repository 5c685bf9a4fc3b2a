"""The admin's side of a session with a site's agent (`autotel push`).

- `pinning`: which agent certificate the admin trusts (SSH `known_hosts` style);
- `storage`: the archives and each client's cursor under the storage folder;
- `verify`: checking a received archive against what the agent announced;
- `offer`: the version and signature an update package announces;
- `session`: the HTTP protocol with one agent over a pinned TLS connection;
- `push`: one whole session, in the order that loses nothing.
"""
