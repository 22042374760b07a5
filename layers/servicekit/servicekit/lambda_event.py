"""An API Gateway HTTP API (payload v2) event, the shape the runner's Lambda handler (Mangum) reads,
and the one boto3 Lambda client method that sends one (chat invokes the runner; the runner itself)."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from typing import Any, NotRequired, Protocol, TypedDict


class LambdaInvoker(Protocol):
    """The one boto3 Lambda client method we use (a stand-in in tests)."""

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> Mapping[str, Any]: ...


class HttpContext(TypedDict):
    method: str
    path: str
    protocol: str
    sourceIp: str
    userAgent: str


class RequestContext(TypedDict):
    accountId: str
    apiId: str
    domainName: str
    domainPrefix: str
    http: HttpContext
    requestId: str
    routeKey: str
    stage: str
    time: str
    timeEpoch: int


class HttpApiEvent(TypedDict):
    version: str
    routeKey: str
    rawPath: str
    rawQueryString: str
    headers: dict[str, str]
    requestContext: RequestContext
    isBase64Encoded: bool
    body: NotRequired[str]


def http_api_event(
    method: str,
    path: str,
    *,
    headers: Mapping[str, str],
    body: bytes = b"",
    query: str = "",
    domain: str = "localhost",
    api_id: str = "local",
    source_ip: str = "127.0.0.1",
) -> HttpApiEvent:
    now = time.time()
    lowered = {name.lower(): value for name, value in headers.items()}
    route_key = f"{method} {path}"
    event: HttpApiEvent = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if body:
        try:
            event["body"] = body.decode()
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def response_parts(payload: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a Lambda proxy response (what Mangum returns)."""
    status = int(payload["statusCode"])
    headers = {str(k): str(v) for k, v in (payload.get("headers") or {}).items()}
    raw = payload.get("body") or ""
    body = base64.b64decode(raw) if payload.get("isBase64Encoded") else str(raw).encode()
    return status, headers, body
