"""The operator portal: the page and `/api/update/*` (see DESIGN.md, Portal HTTP API)."""

from autotel.web.portal.app import build_portal

__all__ = ["build_portal"]
