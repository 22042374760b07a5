"""The chat page: ``GET /`` for browsers (content negotiation), its assets, and ``GET /v1/config``.

The page is plain HTML (``chat/page.html``), CSS and JavaScript modules (``chat/static/``), served by chat itself in
every mode (no build step, nothing from a CDN). Assets live under ``/static/<build>/``, where
``<build>`` is a hash of their contents computed once at start: they are cached for a year
(``immutable``) and a new release changes every URL. The HTML itself is revalidated on each load
(``no-cache`` with a strong ``ETag``), so a deploy is picked up on the next reload.

``/v1/config`` is what the page needs to know before it talks to the API: whether to stream
(``POST /chat``) or to use the jobs API (on AWS, where the HTTP API neither streams nor waits
past 30 s).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TypedDict

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_TEMPLATE = Path(__file__).resolve().parent / "page.html"
BUILD_PLACEHOLDER = "{{build}}"
# No inline script or style anywhere: everything comes from the page's own origin, and it may
# only talk to that origin. Nothing may frame it (clickjacking), nothing is sent elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
ASSET_CACHE = "public, max-age=31536000, immutable"  # the URL changes with the content
PAGE_CACHE = "no-cache"  # revalidate each time (a 304 while the ETag matches)


class PageConfig(TypedDict):
    """``GET /v1/config``: the capabilities the page adapts to."""

    streaming: bool  # false: use the jobs API (create, then poll) instead of a streamed /chat
    max_prompt_chars: int


def build_id(directory: Path) -> str:
    """A short hash of every asset's name and bytes: it changes whenever any asset does."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def wants_html(accept: str) -> bool:
    """Whether ``Accept`` names ``text/html`` (with q > 0): browsers do, Ollama clients and curl do not."""
    for item in accept.split(","):
        media_type, *params = (part.strip() for part in item.split(";"))
        if media_type.lower() != "text/html":
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


class AssetHeaders:
    """Adds the security and cache headers to every response of the wrapped static files app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(SECURITY_HEADERS)
                if message["status"] in (200, 304):
                    headers["Cache-Control"] = ASSET_CACHE
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Page:
    """The page's routes; the HTML and build id are prepared once per process."""

    def __init__(self, settings: Settings, directory: Path = STATIC_DIR, template: Path = PAGE_TEMPLATE) -> None:
        self.build = build_id(directory)
        html = template.read_text(encoding="utf-8")
        self.html = html.replace(BUILD_PLACEHOLDER, self.build).encode()
        self.etag = f'"{hashlib.sha256(self.html).hexdigest()[:32]}"'
        self.static = AssetHeaders(StaticFiles(directory=directory))
        self.config: PageConfig = {
            "streaming": settings.page_streams,
            "max_prompt_chars": settings.max_prompt_chars,
        }

    def routes(self) -> list[BaseRoute]:
        """The assets and the config; ``/`` itself is negotiated by Ollama's API (see ``ollama_api``)."""
        return [
            Mount(f"/static/{self.build}", app=self.static, name="static"),
            Route("/v1/config", self.config_endpoint, methods=["GET"]),
        ]

    def response(self, request: Request) -> Response:
        """The page itself (``304`` when the browser's copy is current)."""
        headers = {**SECURITY_HEADERS, "Cache-Control": PAGE_CACHE, "ETag": self.etag, "Vary": "Accept"}
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(self.html, media_type="text/html; charset=utf-8", headers=headers)

    async def config_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.config, headers={"Cache-Control": PAGE_CACHE})
