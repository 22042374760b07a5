#!/bin/sh
# Entrypoint of the ollama container: start `ollama serve`, wait until it answers, pull
# $OLLAMA_MODEL if it is not there yet, then stay in the foreground with the server.
# The healthcheck (`ollama show $OLLAMA_MODEL`) passes only once the model is present.
#
# Every child runs in the background and the script `wait`s for it, so a stop signal is
# handled at once, even in the middle of the first pull (Docker kills after
# stop_grace_period). Whatever fails, nothing is left running: a failed pull stops the server
# and says which model could not be pulled.
set -eu

model="${OLLAMA_MODEL:-tinyllama}"
wait_s="${OLLAMA_START_TIMEOUT_S:-120}"
server=""
pull=""

# Stop what is running (the pull first, then the server), reap it, and exit with $1.
stop() {
  for pid in $pull $server; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $pull $server; do wait "$pid" 2>/dev/null || true; done
  exit "$1"
}
trap 'echo "entrypoint: stopping"; stop 0' TERM INT

ollama serve &
server=$!

waited=0
until ollama list >/dev/null 2>&1; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "entrypoint: ollama serve exited before answering" >&2
    server=""
    exit 1
  fi
  if [ "$waited" -ge "$wait_s" ]; then
    echo "entrypoint: ollama serve did not answer within ${wait_s}s; stopping it" >&2
    stop 1
  fi
  sleep 1
  waited=$((waited + 1))
done

if ollama show "$model" >/dev/null 2>&1; then
  echo "entrypoint: model $model is present"
else
  echo "entrypoint: pulling $model (first start only; the volume keeps it)"
  ollama pull "$model" &
  pull=$!
  status=0
  wait "$pull" || status=$?
  pull=""
  if [ "$status" -ne 0 ]; then
    echo "entrypoint: could not pull the model '$model' (ollama pull exited with $status)." >&2
    echo "entrypoint: check OLLAMA_MODEL (a name from https://ollama.com/library, e.g. llama3.2) and the network; stopping the server." >&2
    stop 1
  fi
fi

status=0
wait "$server" || status=$?
echo "entrypoint: ollama serve exited with $status" >&2
exit "$status"
