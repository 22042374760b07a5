"""``python -m local up | ollama | invoke | event | setup`` — see README.md, "Local emulation"."""

from __future__ import annotations

import sys

COMMANDS = ("up", "ollama", "invoke", "event", "setup")


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m local {{{'|'.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    command, argv = sys.argv[1], sys.argv[2:]
    if command == "up":
        from local.up import main as run
    elif command == "ollama":
        from local.ollama.serve import main as run
    elif command == "setup":
        from local.setup import main as run
    elif command == "invoke":
        from local.invoke import main as run
    else:
        from local.events import main as run
    status: int = run(argv)
    return status


if __name__ == "__main__":
    sys.exit(main())
