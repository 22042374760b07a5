"""docker-compose.yml, the Dockerfiles and the Ollama entrypoint, checked without a Docker engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.servers import REPO
from tests.waiting import until

COMPOSE_SPEC = REPO.parent / "shared" / "compose-spec.json"
ENTRYPOINT = REPO / "deploy" / "ollama-entrypoint.sh"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    if not COMPOSE_SPEC.is_file():
        pytest.skip(f"the Compose Specification schema is not at {COMPOSE_SPEC} (../shared/ beside the repository)")
    schema = json.loads(COMPOSE_SPEC.read_text())
    # The schema says draft-07 (without the trailing "#" that jsonschema's lookup expects).
    assert "draft-07" in schema["$schema"]
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_services_start_in_health_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"ollama", "runner", "chat", "caddy"}
    assert services["runner"]["depends_on"] == {"ollama": {"condition": "service_healthy"}}
    assert services["chat"]["depends_on"] == {"runner": {"condition": "service_healthy"}}
    assert services["caddy"]["depends_on"] == {"chat": {"condition": "service_healthy"}}
    for name in ("ollama", "runner", "chat"):
        assert services[name]["healthcheck"]["test"], name


def test_ollama_is_the_real_image_with_its_models_in_a_volume(compose: dict[str, Any]) -> None:
    ollama = compose["services"]["ollama"]
    assert ollama["image"].startswith("ollama/ollama:")
    assert "ollama-data:/root/.ollama" in ollama["volumes"]
    assert "ollama-data" in compose["volumes"]
    assert ollama["environment"]["OLLAMA_MODEL"] == "${OLLAMA_MODEL:-tinyllama}"
    assert "ollama-entrypoint.sh" in " ".join(ollama["entrypoint"])
    assert any(v.startswith("./deploy/ollama-entrypoint.sh:") for v in ollama["volumes"])
    # the healthcheck passes only once the model is there
    assert "ollama show" in ollama["healthcheck"]["test"][1]
    assert "$${OLLAMA_MODEL}" in ollama["healthcheck"]["test"][1]


def test_ollama_itself_runs_one_generation_at_a_time_with_a_small_queue(compose: dict[str, Any]) -> None:
    """Defence in depth behind the runner's host lock: Ollama never runs two, and never hoards requests."""
    environment = compose["services"]["ollama"]["environment"]
    assert environment["OLLAMA_NUM_PARALLEL"] == "1"
    assert 1 <= int(environment["OLLAMA_MAX_QUEUE"]) <= 4


def test_only_caddy_is_published_and_on_loopback_by_default(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert [name for name, service in services.items() if "ports" in service] == ["caddy"]
    assert services["caddy"]["ports"] == [
        "${FRONT_BIND:-127.0.0.1}:${HTTP_PORT:-8000}:80",
        "${FRONT_BIND:-127.0.0.1}:${HTTPS_PORT:-8443}:443",
    ]
    assert services["chat"]["expose"] == ["8000"]
    caddy = services["caddy"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert caddy["environment"] == {"SITE_ADDRESS": "${DOMAIN:-:80}", "UPSTREAM": "chat:8000"}
    assert "caddy-data:/data" in caddy["volumes"]  # certificates survive a recreate
    assert services["chat"]["environment"]["TRUST_PROXY_HEADERS"] == "1"
    assert services["runner"]["environment"]["OLLAMA_HOST"] == "http://ollama:11434"
    assert services["chat"]["environment"]["RUNNER_URL"] == "http://runner:8080"
    assert "/readyz" in services["runner"]["healthcheck"]["test"][-1]


def test_chat_and_runner_share_one_private_state_dir(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("chat", "runner"):
        assert services[name]["environment"]["STATE_DIR"] == "/data/state"
        assert services[name]["volumes"] == ["state-data:/data/state"]
        dockerfile = (REPO / f"functions/{name}/Dockerfile").read_text()
        # an empty named volume copies the image directory's owner and mode: the app user's, 0700
        assert "mkdir -p /data/state && chown app /data/state && chmod 700 /data/state" in dockerfile
        assert "--uid 10001" in dockerfile
        assert "JOBS_DIR" not in services[name]["environment"]
    assert "state-data" in compose["volumes"]


def test_chat_requires_keys_and_the_runner_chats_token(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["chat"]["environment"]["AUTH"] == "required"
    tokens = {services[name]["environment"]["RUNNER_TOKEN"] for name in ("chat", "runner")}
    assert len(tokens) == 1
    token = tokens.pop()
    # One secret from .env for both, and no default: compose refuses to start without it.
    assert token.startswith("${RUNNER_TOKEN:?")


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    images = {name: service["image"] for name, service in compose["services"].items() if "image" in service}
    assert set(images) == {"ollama", "caddy"}
    for name, image in images.items():
        tag = image.rstrip("}").rsplit(":", 1)[1].lstrip("-")  # also in ${VAR:-default}
        assert tag[0].isdigit(), f"{name}: {image} is not pinned to a version"
    for function in ("chat", "runner"):
        base = (REPO / f"functions/{function}/Dockerfile").read_text().split("FROM ", 1)[1].split()[0]
        assert base.count(".") == 2, f"{function}: {base} is not pinned to a patch version"


def test_streams_may_finish_when_the_stack_stops(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("runner", "chat", "caddy"):
        assert services[name]["stop_grace_period"] == "120s", name
    for function in ("chat", "runner"):  # uvicorn gives up before Docker kills it
        assert "--timeout-graceful-shutdown 100" in (REPO / f"functions/{function}/Dockerfile").read_text()
    assert "grace_period 100s" in (REPO / "deploy" / "Caddyfile").read_text()


def test_metrics_files_are_per_service_under_chats_directory(compose: dict[str, Any]) -> None:
    services = compose["services"]
    chat_dir = services["chat"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    runner_dir = services["runner"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert runner_dir.startswith(chat_dir + "/")  # chat's /metrics reads its directory and below
    assert chat_dir.startswith("/data/state/")  # on the volume both mount


def test_the_gpu_override_reserves_nvidia_devices_for_ollama() -> None:
    override = yaml.safe_load((REPO / "deploy" / "compose.gpu.yml").read_text())
    assert set(override["services"]) == {"ollama"}
    (device,) = override["services"]["ollama"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    if COMPOSE_SPEC.is_file():
        schema = json.loads(COMPOSE_SPEC.read_text())
        assert list(jsonschema.Draft7Validator(schema).iter_errors(override)) == []


def test_runner_workers_share_one_lock(compose: dict[str, Any]) -> None:
    runner = compose["services"]["runner"]["environment"]
    assert int(runner["RUNNER_WORKERS"]) >= 2
    # LOCK_PATH's default, <STATE_DIR>/runner.lock, is on the volume every worker mounts
    assert "LOCK_PATH" not in runner
    assert runner["STATE_DIR"] == "/data/state"
    dockerfile = (REPO / "functions/runner/Dockerfile").read_text()
    assert "--workers ${RUNNER_WORKERS:-2}" in dockerfile


@pytest.mark.parametrize("function", ["chat", "runner"])
def test_dockerfiles_are_slim_non_root_and_carry_only_their_function(function: str) -> None:
    lines = [line.strip() for line in (REPO / f"functions/{function}/Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM python:3.")
    assert instructions[0].endswith("-slim")
    copies = [line.split()[1] for line in instructions if line.startswith("COPY")]
    assert copies == [
        f"functions/{function}/requirements.txt",
        "layers/servicekit/requirements.txt",
        "layers/servicekit/servicekit",
        f"functions/{function}/{function}",
    ]
    user = [line for line in instructions if line.startswith("USER")]
    assert user == ["USER app"]
    assert instructions.index(user[0]) > max(i for i, line in enumerate(instructions) if line.startswith("RUN"))
    assert f"{function}.app:app" in instructions[-1]


def test_dockerignore_keeps_the_build_context_small() -> None:
    rules = (REPO / ".dockerignore").read_text().splitlines()
    assert rules[1] == "*" or "*" in rules  # everything excluded first ...
    assert {"!functions/chat/", "!functions/runner/", "!layers/servicekit/"} <= set(rules)  # ... then let in


# -- the entrypoint, against a fake `ollama` command ------------------------------------------

FAKE_OLLAMA = """#!/bin/sh
# A stand-in for the ollama CLI: records each call; `serve` answers after a moment.
echo "$*" >> "$FAKE_LOG"
case "$1" in
  serve)
    echo $$ > "$FAKE_DIR/serve.pid"
    sleep 0.3; touch "$FAKE_DIR/up"
    trap 'echo stopped >> "$FAKE_LOG"; exit 0' TERM
    while :; do sleep 0.1; done ;;
  list) [ -f "$FAKE_DIR/up" ] ;;
  show) [ -f "$FAKE_DIR/up" ] && grep -qx "$2" "$FAKE_DIR/models" 2>/dev/null ;;
  pull)
    case "$2" in
      slow) echo $$ > "$FAKE_DIR/pull.pid"; exec sleep 60 ;;  # a first pull of gigabytes
      typo) echo "Error: pull model manifest: file does not exist" >&2; exit 1 ;;
    esac
    echo "$2" >> "$FAKE_DIR/models" ;;
  *) exit 2 ;;
esac
"""


@contextmanager
def entrypoint(tmp_path: Path, present: list[str], model: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The entrypoint under `sh`, with the fake `ollama` first on PATH; (process, its call log).
    Whatever the test did, the entrypoint is gone on leaving."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ollama"
    fake.write_text(FAKE_OLLAMA)
    fake.chmod(0o755)
    (tmp_path / "models").write_text("".join(f"{m}\n" for m in present))
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_DIR": str(tmp_path),
        "OLLAMA_MODEL": model,
    }
    process = subprocess.Popen(["sh", str(ENTRYPOINT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def alive(pid_file: Path) -> bool:
    """Whether the process whose pid the fake wrote still runs (a zombie has exited)."""
    stat = Path(f"/proc/{pid_file.read_text().strip()}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):  # gone since the listing
            continue
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


def run_entrypoint(tmp_path: Path, present: list[str], model: str = "tinyllama") -> list[str]:
    with entrypoint(tmp_path, present, model) as (process, log):

        def serving() -> bool:
            """The model's show (and pull) are done: the entrypoint's one child left is the server."""
            calls = log.read_text().splitlines() if log.exists() else []
            shown = f"show {model}" in calls and (model in present or f"pull {model}" in calls)
            server = tmp_path / "serve.pid"
            return shown and server.exists() and children(process.pid) == [int(server.read_text())]

        until(serving, timeout_s=15, what="the entrypoint waiting on the server alone")
        assert process.poll() is None, "the entrypoint must stay in the foreground with the server"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        assert "entrypoint: stopping" in process.stdout.read().decode()  # the signal reached it, in the foreground
    return log.read_text().splitlines()


def test_entrypoint_is_valid_posix_sh() -> None:
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)], capture_output=True).returncode == 0


def test_entrypoint_serves_waits_then_pulls_a_missing_model(tmp_path: Path) -> None:
    calls = run_entrypoint(tmp_path, present=[])
    # serve runs in the background, so its own line may land after the first `list`
    before_show = calls[: calls.index("show tinyllama")]
    assert sorted(set(before_show)) == ["list", "serve"]
    assert before_show.count("list") >= 2  # it waited: the first lists failed until serve answered
    assert calls[calls.index("show tinyllama") + 1] == "pull tinyllama"
    assert calls[-1] == "stopped"  # SIGTERM reached the server


def test_entrypoint_skips_the_pull_when_the_model_is_present(tmp_path: Path) -> None:
    calls = run_entrypoint(tmp_path, present=["llama3.2"], model="llama3.2")
    assert calls.index("serve") < calls.index("show llama3.2")
    assert calls[calls.index("show llama3.2") - 1] == "list"
    assert not any(c.startswith("pull") for c in calls)


def test_a_stop_signal_during_the_first_pull_stops_everything_at_once(tmp_path: Path) -> None:
    with entrypoint(tmp_path, present=[], model="slow") as (process, _):
        until(lambda: (tmp_path / "pull.pid").exists())
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        # Docker kills at stop_grace_period; before, the script waited for the whole pull (29 s seen).
        assert time.monotonic() - signalled < 2
    assert not alive(tmp_path / "pull.pid")
    assert not alive(tmp_path / "serve.pid")


def test_a_failed_pull_stops_the_server_and_says_which_model(tmp_path: Path) -> None:
    with entrypoint(tmp_path, present=[], model="typo") as (process, log):
        assert process.wait(timeout=15) == 1
        assert process.stdout is not None
        output = process.stdout.read().decode()
    assert "could not pull the model 'typo'" in output
    assert "OLLAMA_MODEL" in output
    assert not alive(tmp_path / "serve.pid")  # no orphaned `ollama serve`
    assert log.read_text().splitlines()[-1] == "stopped"
