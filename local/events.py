"""API Gateway events as ``sam local generate-event apigateway http-api-proxy`` makes them (payload v2)."""

from __future__ import annotations

import argparse
import json

from servicekit.lambda_event import HttpApiEvent, http_api_event

API_ID = "abc123def4"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"


def api_gateway_event(
    method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
) -> HttpApiEvent:
    """What API Gateway would send a function behind an HTTP API route for this request."""
    all_headers = {
        "accept": "*/*",
        "content-type": "application/json",
        "host": DOMAIN,
        "user-agent": "local-event/1.0",
        "x-forwarded-for": "127.0.0.1",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    encoded = (body or "").encode()
    if body is not None:
        all_headers["content-length"] = str(len(encoded))
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    return http_api_event(method, path, headers=all_headers, body=encoded, domain=DOMAIN, api_id=API_ID)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local event", description=__doc__)
    parser.add_argument("--method", default="POST")
    parser.add_argument("--path", default="/chat")
    parser.add_argument("--body", default=None, help="the request body, as text (JSON for our APIs)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    print(json.dumps(api_gateway_event(args.method.upper(), args.path, args.body, headers), indent=2))
    return 0
