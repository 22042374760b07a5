"""GET /openapi.json: a valid OpenAPI 3.1 document, and real responses conform to it."""

from __future__ import annotations

import re
import sys
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from servicekit.contract import WHITESPACE

from tests.fake_ollama import FakeOllama


@pytest.fixture
async def document(chat_client: httpx.AsyncClient) -> dict[str, Any]:
    response = await chat_client.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def conforms(document: dict[str, Any], schema_name: str, instance: Any) -> list[str]:
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource("urn:chat-openapi", resource)
    validator = Draft202012Validator({"$ref": f"urn:chat-openapi#/components/schemas/{schema_name}"}, registry=registry)
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(instance)]


async def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)
    ollama = {
        "/",
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/api/embeddings",
        "/api/tags",
        "/api/show",
        "/api/ps",
        "/api/version",
        "/api/pull",
        "/api/push",
        "/api/create",
        "/api/copy",
        "/api/delete",
        "/api/blobs/{digest}",
    }
    openai = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/models/{model}"}
    page = {"/v1/config"}  # the page's own assets (/static/...) are not API
    assert set(document["paths"]) == {
        "/chat",
        "/healthz",
        "/readyz",
        "/v1/jobs",
        "/v1/jobs/{id}",
        *ollama,
        *openai,
        *page,
    }


async def test_real_responses_conform(document: dict[str, Any], chat_client: httpx.AsyncClient) -> None:
    reply = await chat_client.post("/chat", json={"prompt": "does it conform"})
    assert conforms(document, "ChatResponse", reply.json()) == []
    stream = await chat_client.post("/chat", json={"prompt": "a b", "stream": True})
    for line in stream.text.splitlines():
        assert conforms(document, "StreamLine", httpx.Response(200, content=line).json()) == []
    error = await chat_client.post("/chat", json={"prompt": ""})
    assert conforms(document, "Error", error.json()) == []


async def test_schema_rejects_what_the_api_rejects(document: dict[str, Any]) -> None:
    assert conforms(document, "ChatRequest", {"prompt": "ok"}) == []
    assert conforms(document, "ChatRequest", {"prompt": "ok", "model": "tinyllama", "stream": True}) == []
    for bad in (
        {},
        {"prompt": ""},
        {"prompt": "a", "messages": []},
        {"prompt": "a", "extra": 1},
        {"prompt": "a", "options": {"num_gpu": 1}},
        {"prompt": "a", "model": "nope"},
    ):
        assert conforms(document, "ChatRequest", bad) != [], bad


async def test_job_view_conforms(document: dict[str, Any], chat_client: httpx.AsyncClient, fake: FakeOllama) -> None:
    created = await chat_client.post("/v1/jobs", json={"prompt": "job schema"})
    assert conforms(document, "JobCreated", created.json()) == []
    job = await chat_client.get(created.headers["location"])
    assert conforms(document, "Job", job.json()) == []


async def test_dialect_responses_conform(document: dict[str, Any], chat_client: httpx.AsyncClient) -> None:
    user = [{"role": "user", "content": "does it conform"}]
    cases = [
        ("POST", "/api/chat", {"model": "tinyllama", "messages": user, "stream": False}, "OllamaChatResponse"),
        ("POST", "/api/generate", {"model": "tinyllama", "prompt": "p", "stream": False}, "OllamaGenerateResponse"),
        ("POST", "/api/embed", {"model": "tinyllama", "input": "e"}, "OllamaEmbedResponse"),
        ("POST", "/api/embeddings", {"model": "tinyllama", "prompt": "e"}, "OllamaEmbeddingsResponse"),
        ("GET", "/api/tags", None, "OllamaModels"),
        ("GET", "/api/ps", None, "OllamaModels"),
        ("GET", "/api/version", None, "OllamaVersion"),
        ("POST", "/api/show", {"model": "tinyllama"}, "OllamaShowResponse"),
        ("POST", "/v1/chat/completions", {"model": "tinyllama", "messages": user}, "ChatCompletion"),
        ("POST", "/v1/completions", {"model": "tinyllama", "prompt": "p"}, "TextCompletion"),
        ("POST", "/v1/embeddings", {"model": "tinyllama", "input": "e"}, "EmbeddingList"),
        ("GET", "/v1/models", None, "ModelList"),
        ("GET", "/v1/models/tinyllama", None, "OpenAIModel"),
        ("POST", "/api/pull", {"model": "x"}, "OllamaError"),
        ("POST", "/v1/chat/completions", {"model": "nope", "messages": user}, "OpenAIError"),
        ("POST", "/api/chat", {"model": "nope", "messages": user}, "OllamaError"),
    ]
    for method, path, body, schema in cases:
        response = await chat_client.request(method, path, json=body)
        assert conforms(document, schema, response.json()) == [], (path, response.text)
    for schema, body in (
        ("OllamaChatRequest", {"messages": user}),
        ("ChatCompletionRequest", {"model": "tinyllama", "messages": user}),
        ("OllamaGenerateRequest", {"prompt": "p", "format": "json"}),
    ):
        assert conforms(document, schema, body) == [], schema


# ECMA-262's \s (the regex dialect of JSON Schema and of OpenAPI tools), for reading a pattern as they do.
ECMA_SPACE = "[\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"


def as_ecma_reads_it(pattern: str) -> str:
    return pattern.replace("\\S", "[^" + ECMA_SPACE[1:]).replace("\\s", ECMA_SPACE)


@pytest.mark.parametrize("prompt", ["\x1c", "\x85 ", "\u3000\t", "\u2028"])
async def test_blank_is_the_same_to_the_document_and_to_chat(
    document: dict[str, Any], chat_client: httpx.AsyncClient, prompt: str
) -> None:
    # Chat strips what Python calls whitespace; the document's pattern must refuse the same
    # prompts however a tool reads it ("\\S" let a generator send "\x1c" as text).
    pattern = document["components"]["schemas"]["ChatRequest"]["properties"]["prompt"]["pattern"]
    assert set(WHITESPACE) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert re.search(pattern, prompt) is None
    assert re.search(as_ecma_reads_it(pattern), prompt) is None
    assert re.search(as_ecma_reads_it(pattern), prompt + "a") is not None
    assert conforms(document, "CompletionRequest", {"model": "tinyllama", "prompt": prompt}) != []
    assert (await chat_client.post("/chat", json={"prompt": prompt})).status_code == 422
