"""Small pieces both functions need, shipped with each of them (a SAM layer, a COPY in the Dockerfiles).

- :mod:`servicekit.errors` — the exception tree and the one JSON error envelope.
- :mod:`servicekit.config` — reading environment variables once, failing fast by name.
- :mod:`servicekit.requestid` — ``X-Request-ID`` propagation.
- :mod:`servicekit.disconnect` — cancel a request's work when its client goes away.
- :mod:`servicekit.body` — bounded body reading and JSON decoding.
- :mod:`servicekit.generation` — the generation request both services accept, validated.
- :mod:`servicekit.streaming` — streamed responses whose cleanup always runs.
- :mod:`servicekit.lambda_adapter` — the Mangum handler both functions use.
- :mod:`servicekit.timebudget` — time left: request deadlines, the Lambda margin, ``X-Time-Left-Ms``.
- :mod:`servicekit.upstream` — the lean HTTP client for each hop (an httpx transport, aiohttp by default).
- :mod:`servicekit.jobs` — asynchronous jobs: the document, its lifecycle, SQLite and DynamoDB stores.
- :mod:`servicekit.queue` — the fair queue of generations: tickets, their order, the SQLite store.
- :mod:`servicekit.state` — the private STATE_DIR, its SQLite database, API keys; the DynamoDB table on AWS.
"""
