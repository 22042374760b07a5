"""A Docker-free ``sam local invoke``: call a Lambda handler in-process with an event file.

The handler module is imported as Lambda imports it (its app is built from the environment),
called with the event and a Lambda-like context, and its response is printed as JSON on stdout.
A handler that raises makes the command exit 1, as a crashed invocation does.

What the environment leaves unset takes ``local up``'s defaults, so the examples in events/ work
against ``make up`` as written: chat's ``RUNNER_URL`` and the runner's ``OLLAMA_HOST`` already
default to its ports, ``DEFAULT_MODEL`` defaults here to the model it serves (``smollm2:135m``),
``AUTH`` to ``off`` and ``RUNNER_TOKEN`` to the one ``make up`` keeps in its STATE_DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import sys
import traceback
from collections.abc import MutableMapping
from pathlib import Path

from local.lambda_context import DEFAULT_TIMEOUT_S, LambdaContext
from local.ollama.settings import DEFAULT_MODEL_NAME
from local.up import LOCAL_STATE_DIR, RUNNER_TOKEN_FILE

FUNCTIONS = {"chat": "chat.handler", "runner": "runner.handler"}
REPO = Path(__file__).resolve().parent.parent


def use_local_up_credentials(env: MutableMapping[str, str]) -> None:
    """Chat invoked here is a local developer's: no API key needed unless ``AUTH`` says so, and the
    runner token of the running ``make up`` (from its STATE_DIR) unless ``RUNNER_TOKEN`` is set."""
    env.setdefault("AUTH", "off")
    if not env.get("RUNNER_TOKEN"):
        token_file = Path(env.get("STATE_DIR") or LOCAL_STATE_DIR) / RUNNER_TOKEN_FILE
        with contextlib.suppress(OSError):
            env["RUNNER_TOKEN"] = token_file.read_text().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local invoke", description=__doc__)
    parser.add_argument("function", choices=sorted(FUNCTIONS))
    parser.add_argument(
        "--event", "-e", required=True, type=Path, help="an event JSON file, e.g. events/chat-post.json"
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="the function's timeout, seconds")
    args = parser.parse_args(argv)
    try:
        event = json.loads(args.event.read_text())
    except (OSError, ValueError) as exc:
        print(f"cannot read the event {args.event}: {exc}", file=sys.stderr)
        return 2
    if not os.environ.get("DEFAULT_MODEL", "").strip():
        os.environ["DEFAULT_MODEL"] = DEFAULT_MODEL_NAME  # what `make up` serves (see the docstring)
    use_local_up_credentials(os.environ)
    # As SAM's CodeUri does: the function folder is the root of its code.
    sys.path.insert(0, str(REPO / "functions" / args.function))
    context = LambdaContext(function_name=f"{args.function}-function", timeout_s=args.timeout)
    try:
        module = importlib.import_module(FUNCTIONS[args.function])
        response = module.handler(event, context)
        # Lambda freezes the process with its clients open; a command closes them before it exits.
        asyncio.get_event_loop().run_until_complete(module.app.state.aclose())
    except Exception:
        traceback.print_exc()
        print(json.dumps({"errorType": "HandlerCrashed", "errorMessage": "the handler raised"}))
        return 1
    print(json.dumps(response, indent=2))
    return 0
