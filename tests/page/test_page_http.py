"""The page over HTTP: negotiated at ``/`` (browsers get it, Ollama clients keep "Ollama is running"),
its headers, its caching, ``/v1/config``, and the same through the Lambda handler (AWS)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from chat.app import create_app
from chat.page import CONTENT_SECURITY_POLICY, STATIC_DIR, wants_html
from chat.settings import Settings
from servicekit.lambda_adapter import lambda_handler
from servicekit.state.factory import StateSettings

from local.events import api_gateway_event
from local.lambda_context import LambdaContext
from tests.test_openapi import conforms


class NotAsked:
    async def check(self, request_id: str) -> dict[str, Any]:
        raise AssertionError("the page never needs readiness")


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("TEXT/HTML; charset=utf-8", True),
        ("text/html;q=0", False),
        ("*/*", False),
        ("", False),
        ("application/json", False),
        ("text/plain, text/htmlx", False),
    ],
)
def test_only_an_accept_that_names_html_gets_the_page(accept: str, html: bool) -> None:
    assert wants_html(accept) is html


def assets_of(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(static/[^"]+)"', html)


async def test_a_browser_gets_the_page_with_its_security_headers(chat_client: httpx.AsyncClient) -> None:
    page = await chat_client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["vary"] == "Accept"
    assert page.headers["cache-control"] == "no-cache"
    assert all(" src=" in tag for tag in re.findall(r"<script[^>]*>", page.text))  # no inline script
    assert re.search(r"\son[a-z]+=", page.text) is None  # no inline event handlers
    assert sorted(Path(a).name for a in assets_of(page.text)) == ["icon.svg", "main.js", "page.css"]


async def test_ollama_clients_and_curl_still_get_ollama_is_running(chat_client: httpx.AsyncClient) -> None:
    for accept in ("*/*", "application/json", None):
        headers = {"Accept": accept} if accept else {}
        plain = await chat_client.get("/", headers=headers)
        assert (plain.status_code, plain.text) == (200, "Ollama is running")
        assert plain.headers["content-type"].startswith("text/plain")
        assert plain.headers["vary"] == "Accept"
    head = await chat_client.head("/")
    assert (head.status_code, head.text, head.headers["content-length"]) == (200, "", str(len("Ollama is running")))
    browser_head = await chat_client.head("/", headers={"Accept": BROWSER_ACCEPT})
    assert browser_head.headers["content-type"] == "text/html; charset=utf-8"


async def test_the_page_is_revalidated_by_etag(chat_client: httpx.AsyncClient) -> None:
    first = await chat_client.get("/", headers={"Accept": "text/html"})
    again = await chat_client.get("/", headers={"Accept": "text/html", "If-None-Match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == first.headers["etag"]


async def test_assets_are_immutable_under_their_content_hash(chat_client: httpx.AsyncClient) -> None:
    page = await chat_client.get("/", headers={"Accept": "text/html"})
    for asset in assets_of(page.text):
        response = await chat_client.get(f"/{asset}")
        assert response.status_code == 200, asset
        assert response.content == (STATIC_DIR / Path(asset).name).read_bytes()
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "etag" in response.headers
    script = await chat_client.get(f"/{next(a for a in assets_of(page.text) if a.endswith('main.js'))}")
    assert script.headers["content-type"].split(";")[0] == "text/javascript"  # module scripts need a JS type
    build = assets_of(page.text)[0].split("/")[1]
    stale = await chat_client.get("/static/0000000000000000/main.js")
    assert stale.status_code == 404  # an old build's URL is never answered with new content
    assert (await chat_client.get(f"/static/{build}/../app.py")).status_code == 404


def test_no_asset_writes_html_from_strings() -> None:
    """Untrusted text becomes DOM text only: no innerHTML, outerHTML, insertAdjacentHTML, document.write, eval."""
    for script in STATIC_DIR.glob("*.js"):
        source = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, f"{script.name} uses {sink}"


async def test_config_announces_streaming(chat_client: httpx.AsyncClient) -> None:
    config = await chat_client.get("/v1/config")
    assert config.status_code == 200
    assert config.json() == {"streaming": True, "max_prompt_chars": 16000}


def test_on_aws_the_page_and_its_assets_come_through_the_lambda_handler(tmp_path: Path) -> None:
    """The HTTP API routes ``/``, ``/static/{proxy+}`` and ``/v1/config`` to chat (template.yaml);
    there chat announces no streaming, so the page uses the jobs API."""
    settings = Settings(runner_function="stack-Runner", state=StateSettings(directory=str(tmp_path / "s")))
    # Nothing here reaches the runner function or AWS's control plane: both would fail loudly.
    unreachable = httpx.MockTransport(lambda request: httpx.Response(599))
    app = create_app(settings, runner_transport=unreachable, readiness=NotAsked())
    handler = cast(Callable[[dict[str, Any], Any], dict[str, Any]], lambda_handler(app))
    context = LambdaContext(function_name="chat-function")

    def get(path: str, accept: str = "*/*") -> tuple[int, dict[str, str], bytes]:
        reply = handler(dict(api_gateway_event("GET", path, headers={"accept": accept})), context)
        body = reply["body"].encode()
        return reply["statusCode"], reply["headers"], base64.b64decode(body) if reply["isBase64Encoded"] else body

    status, headers, body = get("/", BROWSER_ACCEPT)
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    for asset in assets_of(body.decode()):
        status, headers, content = get(f"/{asset}")
        assert status == 200
        assert content == (STATIC_DIR / Path(asset).name).read_bytes()
    assert get("/")[2] == b"Ollama is running"
    status, _, config = get("/v1/config")
    assert (status, json.loads(config)["streaming"]) == (200, False)


async def test_config_conforms_to_the_document(chat_client: httpx.AsyncClient) -> None:
    document = (await chat_client.get("/openapi.json")).json()
    assert conforms(document, "PageConfig", (await chat_client.get("/v1/config")).json()) == []
    assert "security" not in document["paths"]["/v1/config"]["get"]  # the page reads it before any key
