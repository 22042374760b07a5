"""Time to first token: in the chat page (Chromium) and with curl, on the same stack.

The stack is the benchmarks' (bench/stack.py: the fake Ollama, the runner and chat as processes,
a key required), so both numbers are what the way of asking adds, not the model. The page's
time runs from the Enter keydown to the first answer text in the DOM, both stamped inside the page
(``performance.now()``); curl's from its start to the first NDJSON line on its stdout (a process
start included: what a person typing the README's command waits).

``python -m bench.page`` prints both; ``make bench`` includes them.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.stack import Stack, stack
from tests.page.browser import launch

# Stamps the Enter keydown and the first text of the newest answer, from the page's own clock.
# (Evaluated through the DevTools protocol, so the page's CSP, which forbids eval, does not apply.)
WATCH = """() => {
  window.__ttft = null;
  const start = {t: 0};
  document.getElementById('prompt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { start.t = performance.now(); window.__ttft = null; }
  }, {capture: true});
  new MutationObserver(() => {
    const bodies = document.querySelectorAll('#log .message.assistant .body .text');
    const last = bodies[bodies.length - 1];
    if (window.__ttft === null && start.t && last && last.textContent) window.__ttft = performance.now() - start.t;
  }).observe(document.getElementById('log'), {childList: true, subtree: true, characterData: true});
}"""


def page_first_token_ms(running: Stack, rounds: int) -> list[float]:
    key = running.headers["Authorization"].removeprefix("Bearer ")
    samples: list[float] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        page.goto(running.chat_url + "/")
        page.get_by_label("Key (kept in this browser only)").fill(key)
        page.get_by_role("button", name="Save").click()
        page.locator("body[data-ready]").wait_for()
        page.evaluate(WATCH)
        for index in range(rounds):
            page.get_by_role("button", name="New chat").click()
            page.get_by_label("Message").fill(f"first token {index}")
            page.get_by_label("Message").press("Enter")
            page.locator("#send:enabled").wait_for()
            samples.append(float(page.evaluate("() => window.__ttft")))
        browser.close()
    return samples


def curl_first_token_ms(running: Stack, rounds: int) -> list[float]:
    samples: list[float] = []
    for index in range(rounds):
        command = [
            "curl",
            "-sN",
            f"{running.chat_url}/chat",
            "-H",
            f"Authorization: {running.headers['Authorization']}",
            "-H",
            "Content-Type: application/json",
            "-d",
            f'{{"prompt": "first token {index}", "stream": true}}',
        ]
        started = time.perf_counter()
        with subprocess.Popen(command, stdout=subprocess.PIPE) as curl:
            assert curl.stdout is not None
            first = curl.stdout.readline()
            samples.append((time.perf_counter() - started) * 1000)
            curl.stdout.read()
        assert b'"response"' in first, first
    return samples


def measure(rounds: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as running:
        curl_first_token_ms(running, 3)  # warm both processes' connections
        return page_first_token_ms(running, rounds), curl_first_token_ms(running, rounds)


def main() -> None:
    page, curl = measure(30)
    for name, samples in (("page", page), ("curl", curl)):
        print(
            f"time to first token, {name:<4}: p50 {statistics.median(samples):6.1f} ms  "
            f"(min {min(samples):.1f}, max {max(samples):.1f}, n={len(samples)})"
        )


if __name__ == "__main__":
    main()
