"""What the services tell their operators: one record per request, logged and counted.

- :mod:`servicekit.observe.record` — the request record endpoints fill in (model, tokens, times).
- :mod:`servicekit.observe.middleware` — the one ASGI middleware both apps install: it starts the
  record, sees the status and the bytes, and hands the finished record to the sinks.
- :mod:`servicekit.observe.logs` — the JSON (or text) log line per request (stdlib logging).
- :mod:`servicekit.observe.metrics` — Prometheus families (multiprocess aware) and ``/metrics`` text.
- :mod:`servicekit.observe.emf` — the same measures as CloudWatch EMF on Lambda (Powertools).
- :mod:`servicekit.observe.settings` — LOG_FORMAT, LOG_CONTENT, METRICS, PROMETHEUS_MULTIPROC_DIR.
"""
