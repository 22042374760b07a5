"""``python -m local ollama``: serve the configured engine on ``OLLAMA_PORT`` (default 11434)."""

from __future__ import annotations

import argparse
import os

import uvicorn

from local.ollama.server import create_app
from local.ollama.settings import engine_from_env, port_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local ollama", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("OLLAMA_BIND", "127.0.0.1"))
    args = parser.parse_args(argv)
    engine = engine_from_env()
    port = port_from_env()
    print(f"serving {engine.card.name} on http://{args.host}:{port}", flush=True)
    uvicorn.run(create_app(engine), host=args.host, port=port, log_level="warning", lifespan="off")
    return 0
