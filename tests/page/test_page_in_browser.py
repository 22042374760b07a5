"""The chat page in a real Chromium, against real chat and runner processes and the fake Ollama.

Each test saves a screenshot of every state it reaches under its tmp dir (``screens/``); with
``PAGE_DOCS_DIR`` set, the two the README shows are written there too.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.fake_ollama import FakeOllama
from tests.page.browser import PHONE, answers, open_page
from tests.page.conftest import Stack
from tests.page.queue_contract import QueueContract
from tests.servers import serve_in_thread
from tests.waiting import until

pytestmark = pytest.mark.slow


def shoot(page: Page, screens: Path, name: str, *, docs: bool = False) -> None:
    path = screens / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    if docs and os.environ.get("PAGE_DOCS_DIR"):
        shutil.copy(path, Path(os.environ["PAGE_DOCS_DIR"]) / f"page-{name}.png")


def ask(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def idle(page: Page) -> None:
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()


def queue_depth(stack: Stack) -> int:
    return int(httpx.get(f"{stack.runner}/readyz").json()["queue_depth"])


@contextmanager
def holding_the_slot(chat: str, requests: int) -> Iterator[None]:
    """``requests`` streamed generations from another client: one holds the slot, the rest wait.
    They hang up when the block ends (the runner then closes Ollama's request)."""
    stop = threading.Event()

    def hold(index: int) -> None:
        body = {"prompt": f"holder {index}", "stream": True}
        with httpx.Client(timeout=30) as client, client.stream("POST", f"{chat}/chat", json=body) as response:
            for _line in response.iter_lines():
                if stop.is_set():
                    return

    threads = [threading.Thread(target=hold, args=(i,), daemon=True) for i in range(requests)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def test_a_streamed_answer_arrives_in_pieces_and_stays_in_the_browser(
    browser: Browser, stack: Stack, ollama: FakeOllama, screens: Path
) -> None:
    ollama.faults.tokens, ollama.faults.token_delay_s = 8, 0.12
    page = open_page(browser, stack.chat, viewport={"width": 900, "height": 560})
    expect(page.get_by_label("Model")).to_have_value("tinyllama:latest")
    shoot(page, screens, "empty")
    page.get_by_label("Message").fill("Why is the sky blue?")
    page.get_by_label("Message").press("Shift+Enter")  # a new line, not a send
    expect(page.get_by_label("Message")).to_have_value("Why is the sky blue?\n")
    page.get_by_label("Message").press("Enter")
    seen: list[str] = []

    def finished() -> bool:
        texts = answers(page)
        if texts and texts[-1] and (not seen or seen[-1] != texts[-1]):
            seen.append(texts[-1])
        return page.get_by_role("button", name="Send").is_enabled()

    until(finished, timeout_s=10, what="the answer")
    final = "Why is the sky blue? Why is the "  # 8 pieces, the fake echoing the question
    assert answers(page) == [final]
    partial = seen[:-1] if seen[-1] == final else seen
    assert len(partial) >= 2, seen  # it grew in front of the reader, piece by piece
    assert all(final.startswith(text) for text in seen)
    expect(page.get_by_role("log")).to_have_attribute("aria-live", "polite")
    shoot(page, screens, "streamed", docs=True)
    assert ollama.recorder.bodies[-1]["messages"] == [{"role": "user", "content": "Why is the sky blue?"}]

    page.reload()  # the conversation lives in localStorage
    page.locator("body[data-ready]").wait_for()
    assert answers(page) == [final]
    page.locator("summary").click()  # the system prompt is folded away until asked for
    page.get_by_label("System prompt").fill("Answer briefly.")
    ollama.faults.token_delay_s = 0
    ask(page, "And at night?")
    idle(page)
    sent = ollama.recorder.bodies[-1]
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    page.get_by_role("button", name="New chat").click()
    assert answers(page) == []
    page.reload()
    page.locator("body[data-ready]").wait_for()
    assert answers(page) == []
    assert page.errors == []  # type: ignore[attr-defined]


def test_stop_closes_the_ollama_request(browser: Browser, stack: Stack, ollama: FakeOllama, screens: Path) -> None:
    ollama.faults.tokens, ollama.faults.token_delay_s = 500, 0.05  # 25 s unless stopped
    page = open_page(browser, stack.chat)
    ask(page, "talk forever")
    until(lambda: bool(answers(page) and answers(page)[-1]), what="the first words")
    page.get_by_role("button", name="Stop").click()
    until(lambda: ollama.recorder.abandoned == 1, timeout_s=3, what="Ollama's request closed")
    expect(page.get_by_role("status")).to_have_text("Stopped.")
    idle(page)
    shoot(page, screens, "stopped")
    ollama.faults.tokens, ollama.faults.token_delay_s = 2, 0
    ask(page, "next one")  # the slot was freed
    expect(page.locator("#log .message.assistant .body").last).to_have_text("next one")
    ollama.faults.tokens, ollama.faults.token_delay_s = 500, 0.05
    ask(page, "talk again")
    until(lambda: len(answers(page)) == 3 and bool(answers(page)[-1]), what="the third answer's first words")
    page.get_by_role("button", name="New chat").click()  # stops it too; its words stay out of the new chat
    until(lambda: ollama.recorder.abandoned == 2, timeout_s=3, what="Ollama's second request closed")
    idle(page)
    page.reload()
    page.locator("body[data-ready]").wait_for()
    assert answers(page) == []
    assert ollama.recorder.peak == 1


def test_a_full_queue_shows_a_countdown_and_one_retry(
    browser: Browser, stack: Stack, ollama: FakeOllama, screens: Path
) -> None:
    ollama.faults.tokens, ollama.faults.token_delay_s = 1000, 0.01
    page = open_page(browser, stack.chat)
    with holding_the_slot(stack.chat, 2):  # MAX_QUEUE=1: one generating, one waiting
        until(lambda: ollama.recorder.active == 1 and queue_depth(stack) == 1, what="a full queue")
        ask(page, "are you there")
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("queue is full")
        countdown = page.locator(".countdown")
        expect(countdown).to_have_text(re.compile(r"You can try again in \d+ s\."))
        first = countdown.inner_text()
        shoot(page, screens, "queue-full")
        until(lambda: countdown.inner_text() != first, timeout_s=2, what="the countdown to tick")
        assert page.get_by_role("button", name="Retry").count() == 1
    ollama.faults.tokens, ollama.faults.token_delay_s = 3, 0
    page.get_by_role("button", name="Retry").click()
    expect(page.locator("#log .message.assistant .body").last).to_have_text("are you there")
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_server_error_shows_the_message_and_the_request_id(
    browser: Browser, stack: Stack, ollama: FakeOllama, screens: Path
) -> None:
    ollama.faults.fail_status = 500
    page = open_page(browser, stack.chat)
    with page.expect_response(re.compile(r"/chat$")) as response:
        ask(page, "break")
    request_id = response.value.headers["x-request-id"]
    # The page streams: the status line went out before its turn came, so Ollama's failure is the
    # stream's last line (an error envelope), which the page shows the same way.
    assert response.value.status == 200
    expect(page.get_by_role("alert")).to_contain_text("injected failure")
    expect(page.locator(".request-id")).to_have_text(f"Request id: {request_id}")
    shoot(page, screens, "server-error")


def test_a_wrong_key_brings_back_the_key_prompt(
    browser: Browser, stack: Stack, ollama: FakeOllama, screens: Path
) -> None:
    page = open_page(browser, stack.keyed_chat)
    urls: list[str] = []
    chat_requests: list[Request] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("request", lambda request: chat_requests.append(request) if request.url.endswith("/chat") else None)
    dialog = page.get_by_role("dialog", name="API key")
    expect(dialog).to_be_visible()  # no key yet, and this server needs one
    expect(dialog).to_contain_text("needs an API key")
    page.get_by_label("Key (kept in this browser only)").fill("oc-" + "x" * 43)
    page.get_by_role("button", name="Save").click()
    expect(dialog).to_contain_text("was not accepted")
    shoot(page, screens, "wrong-key")
    page.get_by_label("Key (kept in this browser only)").fill(stack.key)
    page.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_label("Model")).to_have_value("tinyllama:latest")
    ask(page, "with a key")
    expect(page.locator("#log .message.assistant .body").last).to_have_text("with a key")
    assert chat_requests[-1].headers["authorization"] == f"Bearer {stack.key}"
    assert not [url for url in urls if stack.key in url]  # never in a URL
    assert page.evaluate("() => localStorage.getItem('chat.apiKey')") == stack.key


def test_model_output_is_shown_as_text_and_runs_nothing(
    browser: Browser, stack: Stack, ollama: FakeOllama, screens: Path
) -> None:
    """At phone width, in dark mode: markup in the model's answer (and in the question) is text."""
    hostile = "<img src=x onerror=alert(1)>"
    page = open_page(browser, stack.chat, viewport=PHONE, color_scheme="dark")
    ask(page, hostile)
    expect(page.locator("#log .message.assistant .body").last).to_have_text(hostile)
    expect(page.locator("#log .message.user .body").last).to_have_text(hostile)
    ask(page, "``` <b>bold</b> ```")  # a code block: its content is text as well
    expect(page.locator("#log .message.assistant pre code")).to_have_text(" <b>bold</b> ")
    idle(page)
    assert page.locator("#log img, #log b").count() == 0
    assert page.errors == []  # type: ignore[attr-defined]  # no alert dialog, no script error
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
    shoot(page, screens, "markup-as-text-phone-dark")


def test_the_jobs_api_when_the_server_announces_no_streaming(
    browser: Browser, stack: Stack, ollama: FakeOllama, screens: Path
) -> None:
    page = open_page(browser, stack.jobs_chat)
    assert page.locator("body").get_attribute("data-transport") == "jobs"
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    ollama.faults.tokens, ollama.faults.token_delay_s = 1000, 0.01
    with holding_the_slot(stack.chat, 1):
        until(lambda: ollama.recorder.active == 1, what="the slot taken")
        ask(page, "one two three four five six")
        expect(page.get_by_role("status")).to_have_text(re.compile(r"(1st in line|Waiting in line)"))
        shoot(page, screens, "job-queued")
        ollama.faults.tokens, ollama.faults.token_delay_s = 6, 0.15
    seen: list[str] = []

    def finished() -> bool:
        seen.append(answers(page)[-1])
        return page.get_by_role("button", name="Send").is_enabled()

    until(finished, timeout_s=10, what="the job to finish")
    assert answers(page)[-1].strip() == "one two three four five six"
    assert any(text and text != answers(page)[-1] for text in seen)  # the partial response, as it grew
    assert [url.rsplit("/", 2)[-2:] for url in posts] == [["v1", "jobs"]]  # one job, no /chat
    shoot(page, screens, "job-answered")


def test_the_queue_position_from_the_queue_contract(browser: Browser, screens: Path) -> None:
    """Against a stand-in that streams the fair queue's contract (issue 10) step by step."""
    contract = QueueContract(
        [
            {"queued": {"position": 3, "eta_s": 12.5}},
            {"queued": {"position": 2, "eta_s": 6}},
            {"queued": {"position": 1, "eta_s": 0.2}},
            {"response": "The sky is blue "},
            {"response": "because of Rayleigh scattering."},
            {"done": True, "done_reason": "stop"},
        ]
    )
    with serve_in_thread(contract.app) as url:
        page = open_page(browser, url, viewport={"width": 900, "height": 560})
        ask(page, "Why is the sky blue?")
        status = page.get_by_role("status")
        contract.release()
        expect(status).to_have_text("3rd in line · about 13 s")
        expect(page.locator("#log .queued")).to_have_text("3rd in line · about 13 s")
        shoot(page, screens, "queued", docs=True)
        contract.release()
        expect(status).to_have_text("2nd in line · about 6 s")
        contract.release()
        expect(status).to_have_text("1st in line · about 1 s")
        contract.release()
        expect(page.locator("#log .message.assistant .body").last).to_have_text("The sky is blue")
        expect(page.locator("#log .queued")).to_have_count(0)
        contract.release(2)
        idle(page)
        assert answers(page) == ["The sky is blue because of Rayleigh scattering."]


def test_a_second_page_sees_its_place_in_the_real_queue(
    browser: Browser, stack: Stack, ollama: FakeOllama, screens: Path
) -> None:
    ollama.faults.tokens, ollama.faults.token_delay_s = 60, 0.05  # 3 s
    first, second = open_page(browser, stack.chat), open_page(browser, stack.chat)
    ask(first, "first in")
    until(lambda: ollama.recorder.active == 1, what="the first page's generation")
    ask(second, "second in")
    try:
        expect(second.get_by_role("status")).to_have_text(re.compile(r"1st in line"), timeout=2000)
        shoot(second, screens, "real-queue")
        expect(second.locator("#log .message.assistant .body").last).to_contain_text("second in", timeout=8000)
    finally:
        for page in (first, second):  # stop what still runs (a finished answer has nothing to stop)
            stop = page.get_by_role("button", name="Stop")
            if stop.is_enabled():
                stop.click()
