"""After a scripted mix of requests, /metrics has the samples it should; only operators may read it."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from servicekit.observe.metrics import PrometheusMetrics

from tests.auth.helpers import add_key
from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient
from tests.jobs.helpers import status_is, wait_for
from tests.observe.helpers import samples, total, value

P = "ollama_chat_"


@pytest.fixture
async def stack(fake: FakeOllama, runner_settings: RunnerSettings, chat_settings: ChatSettings):  # type: ignore[no-untyped-def]
    """Chat (keys required, ``ops`` may read /metrics) over a runner whose /readyz wants a model Ollama lacks."""
    metrics = PrometheusMetrics()  # one process: both apps count into one set of families
    runner = create_runner_app(
        dataclasses.replace(runner_settings, ready_model="missing-model"),
        ollama_transport=httpx.ASGITransport(fake.app),
        metrics=metrics,
    )
    settings = dataclasses.replace(chat_settings, auth="required", metrics_keys=("ops",))
    alice, ops = add_key(settings.state, "alice"), add_key(settings.state, "ops")
    chat = create_chat_app(settings, runner_transport=httpx.ASGITransport(runner), metrics=metrics)
    async with AppClient(chat, behind=[runner], base_url="http://chat.test") as client:
        yield client, {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {ops}"}


async def test_a_scripted_mix_shows_in_the_metrics(stack) -> None:  # type: ignore[no-untyped-def]
    client, alice, ops = stack
    whole = await client.post("/chat", json={"prompt": "one two"}, headers=alice)
    assert whole.status_code == 200
    streamed = await client.post("/chat", json={"prompt": "a b c", "stream": True}, headers=alice)
    assert streamed.status_code == 200
    assert '"done":true' in streamed.text
    assert (await client.get("/readyz")).status_code == 503  # not_ready, relayed from the runner
    assert (await client.post("/chat", json={"prompt": "x"})).status_code == 401
    job = await client.post("/v1/jobs", json={"prompt": "job"}, headers=alice)
    assert job.status_code == 202
    client.headers.update(alice)
    finished = await wait_for(client, job.json()["id"], status_is("succeeded"))
    client.headers.clear()
    done_line = json.loads(streamed.text.strip().splitlines()[-1])
    tokens_out = sum(
        usage["completion_tokens"] for usage in (whole.json()["usage"], done_line["usage"], finished["usage"])
    )

    response = await client.get("/metrics", headers=ops)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    requests = P + "requests_total"
    assert value(found, requests, service="chat", route="/chat", status="200", code="") == 2
    assert value(found, requests, service="runner", route="/v1/run/{model:path}", status="200", code="") == 2
    assert value(found, requests, service="chat", route="/readyz", status="503", code="not_ready") == 1
    assert value(found, requests, service="runner", route="/readyz", status="503", code="not_ready") == 1
    assert value(found, requests, service="chat", route="/chat", status="401", code="unauthorized") == 1
    assert value(found, requests, service="chat", route="/v1/jobs", status="202", code="") == 1
    # A job's run is reported as the runner's "job" route (it runs outside any request).
    assert value(found, requests, service="runner", route="job", status="200", code="") == 1
    # Generations are counted once, by the runner: the two /chat ones and the job.
    assert value(found, P + "generation_seconds_count", model="tinyllama") == 3
    assert value(found, P + "first_token_seconds_count", model="tinyllama") == 3
    assert value(found, P + "tokens_per_second_count", model="tinyllama") >= 0  # the fake may report no eval time
    assert total(found, P + "tokens_out_total", model="tinyllama", caller="alice") == tokens_out
    assert total(found, P + "tokens_in_total", model="tinyllama", caller="alice") > 0
    assert value(found, P + "slot_busy") == 0
    # Every ticket that got the slot: the two /chat ones and the job (a batch ticket).
    assert value(found, P + "queue_wait_seconds_count", **{"class": "interactive"}) == 2
    assert value(found, P + "queue_wait_seconds_count", **{"class": "batch"}) == 1
    assert value(found, P + "queue_depth", **{"class": "interactive"}) == 0
    assert value(found, P + "queue_depth", **{"class": "batch"}) == 0
    assert (P + "queue_oldest_wait_seconds", ()) in found
    assert value(found, P + "ollama_up") == 0  # the runner's /readyz failed
    assert value(found, P + "jobs", status="succeeded") == 1
    assert value(found, P + "jobs", status="queued") == 0
    assert value(found, P + "keys", state="active") == 2


async def test_metrics_need_a_key_named_in_metrics_keys(stack) -> None:  # type: ignore[no-untyped-def]
    client, alice, _ = stack
    assert (await client.get("/metrics")).status_code == 401
    refused = await client.get("/metrics", headers=alice)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"


async def test_without_auth_only_loopback_may_read_metrics(runner_app, make_chat) -> None:  # type: ignore[no-untyped-def]
    async with make_chat(runner_app) as chat:  # AUTH=off; httpx's ASGI client is 127.0.0.1
        assert (await chat.get("/metrics")).status_code == 200
    remote = httpx.ASGITransport(chat._transport.app, client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=remote, base_url="http://chat.test") as client:
        assert (await client.get("/metrics")).status_code == 403
