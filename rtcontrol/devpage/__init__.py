"""The dev page: a browser softphone and a live transcript, served by the emulator.

Plain HTML, CSS and JavaScript in ``static/`` (no build step): ``GET /`` is the page,
``GET /static/<file>`` its assets, ``GET /favicon.ico`` its icon. It talks only to the
emulator's control API (``/control/v1``), on the same origin.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = ["STATIC", "page_routes"]

STATIC = files(__package__) / "static"
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


async def _index(request: Request) -> Response:
    return HTMLResponse(
        (STATIC / "index.html").read_text(encoding="utf-8"),
        headers={"Cache-Control": "no-store"},
    )


async def _asset(request: Request) -> Response:
    name = request.path_params["name"]
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in _TYPES:
        return Response("not found", status_code=404)
    found = STATIC / name
    if not found.is_file():
        return Response("not found", status_code=404)
    return Response(
        found.read_bytes(),
        media_type=_TYPES[suffix],
        headers={"Cache-Control": "no-store"},
    )


async def _favicon(request: Request) -> Response:
    """The icon browsers ask for on their own (the page links the same SVG)."""
    return Response(
        (STATIC / "favicon.svg").read_bytes(),
        media_type=_TYPES[".svg"],
        headers={"Cache-Control": "max-age=3600"},
    )


def page_routes() -> list[BaseRoute]:
    """``GET /``, ``GET /static/{name}`` and ``GET /favicon.ico`` (mount before the
    catch-all JSON-RPC)."""
    return [
        Route("/", _index, methods=["GET"]),
        Route("/static/{name}", _asset, methods=["GET"]),
        Route("/favicon.ico", _favicon, methods=["GET"]),
    ]
