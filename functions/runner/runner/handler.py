"""The runner as an AWS Lambda handler (``runner.handler.handler``).

The app (and its HTTP client) is built once per container, at import.
"""

from __future__ import annotations

from servicekit.lambda_adapter import lambda_handler

from runner.app import app

handler = lambda_handler(app)
