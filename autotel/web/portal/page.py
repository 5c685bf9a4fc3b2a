"""The operator page: rendered on the server, so it works before any script runs.

The page's script reads its words and the first status from a JSON block in the
page (not inline code, so a strict Content-Security-Policy can forbid inline
scripts), then follows the update over the SSE stream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bottle

from autotel.web.portal.i18n import TEXTS

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
_PAGE = bottle.SimpleTemplate(name="page", lookup=[str(TEMPLATE_DIR)])


def render_page(*, lang: str, site: str, signed_in: bool, status: dict[str, Any] | None,
                csrf: str | None, pin_set: bool = True) -> str:
    texts = TEXTS[lang]
    data = {"lang": lang, "texts": texts, "signedIn": signed_in, "csrf": csrf, "status": status}
    return str(_PAGE.render(lang=lang, t=texts, site=site, signed_in=signed_in, pin_set=pin_set,
                            status=status or {}, data_json=_script_safe_json(data)))


def _script_safe_json(data: Any) -> str:
    """JSON that cannot end the <script> element it sits in."""
    return (json.dumps(data, ensure_ascii=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
