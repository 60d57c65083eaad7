"""Offline HTML export of a widget: one self-contained file with the same front-end modules.

This module knows widgets and the host page only (no view): ``save_html(widget, path)`` writes
any widget tree; ``Explorer``'s ``to_html(atlas, path)`` builds one and writes it with this.
The page embeds the state of every widget model the view reaches (binary traits included), the
anywidget front-end modules they use, and ``static/host.js``: a small host that implements the
anywidget model interface (``get``/``set``/``on``/``off``/``save_changes``/``send`` and
``host.getModel``/``host.getWidget``) over that embedded state. So the views, their linking, hover
and filters work from disk with no kernel. The payload is gzip-compressed (the browser unpacks it
with ``DecompressionStream``) and base64-encoded; a Content-Security-Policy forbids any network
request.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import pathlib
import struct

import anywidget

from .. import files
from ._common import HOST

__all__ = ["CSP", "MAGIC", "close_widgets", "payload", "render_html", "save_html", "split_buffers",
           "widget_models"]

MAGIC = b"NCX1"
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval' blob:; "
       "style-src 'unsafe-inline' blob:; img-src blob: data:; font-src data:; "
       "worker-src blob:; connect-src blob: data:")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}</title>
<style>
body {{ margin: 0; padding: 16px; background: #f6f7f9; color: #1f2933;
       font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }}
#nc-status {{ color: #52606d; padding: 8px 0; }}
@media (prefers-color-scheme: dark) {{
  body {{ background: #0f1114; color: #e3e7ec; }}
  #nc-status {{ color: #a0aab5; }}
}}
</style>
</head>
<body>
<div id="nc-status">Loading…</div>
<div id="nc-root"></div>
<script type="application/octet-stream" id="nc-payload" data-encoding="{encoding}">{payload}</script>
<script>
{host}
</script>
</body>
</html>
"""


BINARY = (bytes, bytearray, memoryview)


def split_buffers(state):
    """Pull the binary values (bytes, bytearray, memoryview) out of a widget state (nested dicts
    and lists): ``(state with None in their place, paths, buffers)``; a path lists the keys and
    list positions that lead to its buffer, e.g. ``["xy", "buffer"]``. The state given is not
    changed (the containers on a buffer's path are new)."""
    paths, buffers = [], []

    def walk(value, path):
        if isinstance(value, BINARY):
            paths.append(path)
            buffers.append(value)
            return None
        if isinstance(value, dict):
            return {key: walk(item, [*path, key]) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(item, [*path, i]) for i, item in enumerate(value)]
        return value

    if not isinstance(state, dict):
        raise TypeError(f"a widget state is a dict, got {type(state).__name__}")
    return walk(state, []), paths, buffers


def widget_models(root) -> dict:
    """Every anywidget model reachable from ``root`` through its synced widget traits."""
    found, stack = {}, [root]
    while stack:
        widget = stack.pop()
        if widget.model_id in found:
            continue
        found[widget.model_id] = widget
        for name in widget.keys:
            value = getattr(widget, name, None)
            values = value if isinstance(value, (list, tuple)) else [value]
            stack.extend(v for v in values if isinstance(v, anywidget.AnyWidget))
    return found


def payload(root) -> bytes:
    """The binary page payload: MAGIC, header length (uint32 LE), JSON header, then the module
    code and the binary buffers the header points into."""
    body = bytearray()
    modules, models = {}, {}

    def put(data: bytes) -> list[int]:
        start = len(body)
        body.extend(data)
        return [start, len(data)]

    for model_id, widget in widget_models(root).items():
        state = widget.get_state()
        code = state.pop("_esm", "")
        css = state.pop("_css", "")
        digest = hashlib.sha256(code.encode()).hexdigest()[:16]
        if digest not in modules:
            modules[digest] = put(code.encode())
        state, paths, buffers = split_buffers(state)
        models[model_id] = {
            "module": digest, "css": css or "", "state": state,
            "buffers": [[path, *put(bytes(buffer))] for path, buffer in zip(paths, buffers)]}
    header = json.dumps({"root": root.model_id, "models": models, "modules": modules},
                        separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + bytes(body)


def render_html(root, *, title: str = "notebookcarto", compress: bool = True) -> str:
    """The self-contained page of widget ``root`` as a string."""
    if not HOST.exists():
        raise FileNotFoundError(f"the export host {HOST} is missing: reinstall notebookcarto or "
                                "build the front end (`npm ci && npm run build` in js/)")
    data = payload(root)
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    host = HOST.read_text(encoding="utf-8").replace("</script", "<\\/script")
    return PAGE.format(csp=CSP, title=html.escape(title), host=host,
                       encoding="gzip" if compress else "raw",
                       payload=base64.b64encode(data).decode("ascii"))


def save_html(view, path, *, title: str | None = None, compress: bool = True) -> str:
    """Write ``view`` (any notebookcarto view, e.g. an Explorer) to ``path`` as one offline HTML
    file, atomically (a crash leaves the previous file or the new one, never a fragment);
    returns the path."""
    if title is None:
        title = getattr(view, "title", "") or "notebookcarto"
    page = render_html(view, title=title, compress=compress)
    return str(files.write_file(pathlib.Path(path), page))


def close_widgets(root) -> None:
    """Close the comms of a widget tree made only for an export."""
    for widget in widget_models(root).values():
        widget.close()
