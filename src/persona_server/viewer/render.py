"""One HTML page holding a graph export, the viewer's script and the graph library.

The page loads nothing at view time: Cytoscape.js (vendored from its npm lock, see
`scripts/vendor_js.py`), the viewer and the data are all inside it, and its Content Security
Policy forbids any request. The data is the export file's records, as JSON in a
`<script type="application/json">` element, escaped so that user text cannot end that element.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

_PACKAGE = "persona_server.viewer"
_PLACEHOLDER = re.compile(r"/\*__([A-Z_]+)__\*/|__(TITLE|DATA)__")


@cache
def _asset(name: str) -> str:
    return resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def _script_safe_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # `<`, `>` and `&` as JSON escapes: nothing in the data can close the script element or
    # open a comment, and JSON.parse reads them back unchanged.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(header: dict[str, Any], records: Iterable[dict[str, Any]]) -> str:
    """The page for an export: `header` is its first line, `records` the nodes and edges."""
    data = {"header": header, "records": list(records)}
    library = _asset("vendor/cytoscape.min.js")
    script = _asset("viewer.js")
    for name, code in (("cytoscape.min.js", library), ("viewer.js", script)):
        if "</script" in code.lower():
            raise ValueError(f"{name} contains '</script' and cannot be inlined")
    title = f"Persona · {header.get('user_id', '')}".strip(" ·")
    parts = {
        "VIEWER_CSS": _asset("viewer.css"),
        "TITLE": html.escape(title),
        "DATA": _script_safe_json(data),
        "CYTOSCAPE": library,
        "VIEWER_JS": script,
    }
    # One pass over the template: inserted text is never searched for placeholders again.
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1) or m.group(2)], _asset("template.html"))
