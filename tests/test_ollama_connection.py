"""The runner keeps its connection to Ollama between generations.

Ollama writes a stream's final chunk and ends the body (the zero-length chunk) in separate
writes. A client that closes the response right after the final chunk, before the body's end
arrives, loses the connection, and the next generation waits for a new one. This server
separates the two by a few milliseconds and counts connections.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from runner.ollama import OllamaClient
from runner.wire import ollama_request

# Between the final chunk and the body's end (well inside the client's drain).
END_DELAY_S = 0.01


class ChunkedServer:
    """Answers every POST with a two-chunk NDJSON stream, its end sent ``END_DELAY_S`` later."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.requests += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                for chunk in (
                    {"model": "m", "response": "hi", "done": False},
                    {"model": "m", "response": "", "done": True},
                ):
                    data = json.dumps(chunk).encode() + b"\n"
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()
                await asyncio.sleep(END_DELAY_S)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def chunked_server() -> AsyncIterator[tuple[ChunkedServer, str]]:
    server = ChunkedServer()
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("streamed", [False, True])
async def test_generations_share_one_connection(chunked_server: tuple[ChunkedServer, str], streamed: bool) -> None:
    server, url = chunked_server
    client = OllamaClient(url, timeout=httpx.Timeout(5.0))
    try:
        for _ in range(3):
            prepared = client.prepare(*ollama_request("m", {"prompt": "hello"}))
            if streamed:
                texts = []
                async with client.stream(prepared) as chunks:
                    async for chunk in chunks:  # as the runner's stream does: stop at the final chunk
                        texts.append(chunk.get("response"))
                        if chunk.get("done"):
                            break
                assert texts == ["hi", ""]
            else:
                assert (await client.generate(prepared))["response"] == "hi"
    finally:
        await client.aclose()
    assert server.requests == 3
    assert server.connections == 1


async def test_a_caller_cancelling_its_scope_at_the_final_chunk_still_gets_it(
    chunked_server: tuple[ChunkedServer, str],
) -> None:
    """As a job does: at the final chunk it cancels its task group (the progress reporter) and
    returns the chunk; the body's end, read after that, must not turn the return into a cancellation."""
    server, url = chunked_server
    client = OllamaClient(url, timeout=httpx.Timeout(5.0))

    async def final_chunk() -> dict[str, object] | None:
        async with anyio.create_task_group() as group:
            prepared = client.prepare(*ollama_request("m", {"prompt": "hello"}))
            async with client.stream(prepared) as chunks:
                async for chunk in chunks:
                    if chunk.get("done"):
                        group.cancel_scope.cancel()
                        return dict(chunk)
        return None

    try:
        for _ in range(2):
            final = await final_chunk()
            assert final is not None
            assert final["done"] is True
    finally:
        await client.aclose()
    assert server.connections == 1
