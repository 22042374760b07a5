"""API Gateway events as ``sam local generate-event apigateway http-api-proxy`` makes them (payload v2)."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

API_ID = "abc123def4"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"


def http_api_event(
    method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None, query: str = ""
) -> dict[str, Any]:
    now = time.time()
    all_headers = {
        "accept": "*/*",
        "content-type": "application/json",
        "host": DOMAIN,
        "user-agent": "local-event/1.0",
        "x-forwarded-for": "127.0.0.1",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if body is not None:
        all_headers["content-length"] = str(len(body.encode()))
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    route_key = f"{method} {path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": DOMAIN,
            "domainPrefix": API_ID,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": all_headers["user-agent"]},
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }  # fmt: skip
    if body is not None:
        event["body"] = body
    return event


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local event", description=__doc__)
    parser.add_argument("--method", default="POST")
    parser.add_argument("--path", default="/chat")
    parser.add_argument("--body", default=None, help="the request body, as text (JSON for our APIs)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    print(json.dumps(http_api_event(args.method.upper(), args.path, args.body, headers), indent=2))
    return 0
