#!/bin/sh
# Entrypoint of the ollama container: start `ollama serve`, wait until it answers, pull
# $OLLAMA_MODEL if it is not there yet, then stay in the foreground with the server.
# The healthcheck (`ollama show $OLLAMA_MODEL`) passes only once the model is present.
set -eu

model="${OLLAMA_MODEL:-tinyllama}"
wait_s="${OLLAMA_START_TIMEOUT_S:-120}"

ollama serve &
server=$!
# Forward the container's stop signal to the server, so `docker compose down` is quick and clean.
trap 'kill -TERM "$server" 2>/dev/null; wait "$server"; exit 0' TERM INT

waited=0
until ollama list >/dev/null 2>&1; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "entrypoint: ollama serve exited before answering" >&2
    exit 1
  fi
  if [ "$waited" -ge "$wait_s" ]; then
    echo "entrypoint: ollama serve did not answer within ${wait_s}s" >&2
    kill -TERM "$server" 2>/dev/null || true
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done

if ollama show "$model" >/dev/null 2>&1; then
  echo "entrypoint: model $model is present"
else
  echo "entrypoint: pulling $model (first start only; the volume keeps it)"
  ollama pull "$model"
fi

wait "$server"
