"""``python -m chat.keys``: create, list and revoke the API keys callers present.

::

    python -m chat.keys add NAME [--weight N] [--max-waiting N] [--models a,b]   # the key is the last line
    python -m chat.keys list                                                      # never keys or hashes
    python -m chat.keys revoke NAME

Keys live where chat reads them: the SQLite store in ``STATE_DIR`` (local, compose), or with
``--table NAME`` (or ``JOBS_TABLE``) the deployment's DynamoDB table, reached with boto3's
standard credential chain. A key is shown once, at creation; only its SHA-256 is stored.
Running chats see a new or revoked key within ``KEY_CACHE_TTL_S`` (5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from servicekit.config import ConfigError
from servicekit.jobs.model import iso
from servicekit.state.factory import StateSettings, key_store
from servicekit.state.keys import KEY_NAME, KeyNameTaken, KeyStore, new_api_key


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def _name(text: str) -> str:
    if not KEY_NAME.match(text):
        raise argparse.ArgumentTypeError(
            "letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit"
        )
    return text


def _models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise argparse.ArgumentTypeError("name at least one model")
    return models


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m chat.keys", description="Manage the API keys of chat's callers.")
    cli.add_argument(
        "--table", help="the deployment's DynamoDB table (default: JOBS_TABLE; unset: SQLite in STATE_DIR)"
    )
    commands = cli.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create a key; it is printed once, as the last line")
    add.add_argument("name", type=_name, help="unique; shown in logs and metrics")
    add.add_argument("--weight", type=_positive, default=1, help="turns per round in the fair queue (default 1)")
    add.add_argument(
        "--max-waiting", type=_positive, help="requests this caller may have waiting (default: the server's)"
    )
    add.add_argument("--models", type=_models, help="comma list: only these models (default: all allowed)")
    commands.add_parser("list", help="names, creation, revocation and weights (never keys)")
    revoke = commands.add_parser("revoke", help="revoke the named key (running chats stop accepting it within seconds)")
    revoke.add_argument("name", type=_name)
    return cli


async def run(args: argparse.Namespace, store: KeyStore, out: TextIO) -> int:
    now = time.time()
    if args.command == "add":
        key, record = new_api_key(
            args.name, now=now, weight=args.weight, max_waiting=args.max_waiting, models=args.models
        )
        try:
            await store.add(record)
        except KeyNameTaken:
            print(f"error: a key named {args.name!r} exists already (names are never reused)", file=sys.stderr)
            return 1
        print(f"created key {args.name!r}; it is shown only now — keep it secret:", file=out)
        print(key, file=out)
        return 0
    if args.command == "list":
        print(f"{'name':<24} {'created':<25} {'revoked':<25} weight  max_waiting  models", file=out)
        for item in await store.list():
            models = ",".join(item["models"]) if item["models"] else "*"
            print(
                f"{item['name']:<24} {iso(item['created_at']):<25} {iso(item['revoked_at']) or '-':<25} "
                f"{item['weight']:<7} {item['max_waiting'] or '-':<12} {models}",
                file=out,
            )
        return 0
    if await store.revoke(args.name, now=now):
        print(f"revoked key {args.name!r}", file=out)
        return 0
    print(f"error: no unrevoked key named {args.name!r}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, env: Mapping[str, str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        state = StateSettings.from_env(os.environ if env is None else env)
        if args.table:
            state = dataclasses.replace(state, table=args.table)
        store = key_store(state)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(args, store, out))


if __name__ == "__main__":
    sys.exit(main())
