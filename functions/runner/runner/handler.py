"""The runner as an AWS Lambda handler (``runner.handler.handler``).

The app (and its HTTP client) is built once per container, at import; Mangum's lifespan is off
because it would run on every invocation.
"""

from __future__ import annotations

from mangum import Mangum

from runner.app import app

handler = Mangum(app, lifespan="off")
