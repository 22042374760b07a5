"""A hand-written corpus of hostile bodies (beside the ones in test_chat_validation.py and schemathesis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fake_ollama import FakeOllama

TEN_MB = 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"prompt": "hi", "options": {"temperature": 1e400}}', 422, "invalid_request"),  # inf
        (b'{"prompt": "hi", "options": {"seed": ' + b"9" * 5000 + b"}}", 400, "invalid_json"),  # too many digits
        (b'{"prompt": "hi", "options": {"temperature": NaN}}', 422, "invalid_request"),
        (b'{"prompt": "hi", "options": {"top_k": -Infinity}}', 422, "invalid_request"),
        (b'{"prompt": "hi"} trailing', 400, "invalid_json"),
        (b"\xef\xbb\xbf" + b'{"prompt": "hi"}', 200, None),  # a byte-order mark is tolerated (RFC 8259)
        (b'{"prompt": "\\ud800"}', 422, "invalid_request"),  # valid JSON, but not text
        (b'{"prompt": "hi", "system": "\\udfff"}', 422, "invalid_request"),
        (b'{"messages": [{"role": "user", "content": "\\ud83d"}]}', 422, "invalid_request"),
    ],
)
async def test_hostile_json(
    chat_client: httpx.AsyncClient, fake: FakeOllama, body: bytes, status: int, code: str | None
) -> None:
    response = await chat_client.post("/chat", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["error"]["code"] == code
        assert fake.recorder.bodies == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
async def test_wrong_content_types_are_read_as_json_or_refused_cleanly(
    chat_client: httpx.AsyncClient, content_type: str
) -> None:
    ok = await chat_client.post("/chat", content=b'{"prompt": "hi"}', headers={"Content-Type": content_type})
    assert ok.status_code == 200
    form = await chat_client.post("/chat", content=b"prompt=hi", headers={"Content-Type": content_type})
    assert form.status_code == 400
    assert form.json()["error"]["code"] == "invalid_json"


async def test_a_ten_megabyte_body_is_refused_without_being_read(
    chat_client: httpx.AsyncClient, fake: FakeOllama
) -> None:
    sent = 0

    async def ten_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b'{"prompt": "' + b"x" * (1024 * 1024)
        while sent < TEN_MB:
            sent += len(chunk)
            yield chunk

    declared = await chat_client.post("/chat", content=b"x" * TEN_MB)
    streamed = await chat_client.post("/chat", content=ten_megabytes())
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
    assert sent < TEN_MB  # reading stopped at the limit
    assert fake.recorder.bodies == []
