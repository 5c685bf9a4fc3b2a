"""Where the files shipped with autotel (job kinds, migrations) are found.

In a source checkout they are the top-level `jobs/` and `migrations/`; in an
installed wheel they are bundled under `autotel/_bundled/`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"autotel is installed without its {name}/ folder")
