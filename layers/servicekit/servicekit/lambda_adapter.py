"""One way to turn either app into a Lambda handler (Mangum, configured for our media types)."""

from __future__ import annotations

from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from mangum.types import ASGI

# Mangum base64-encodes bodies of media types it does not know as text; our streams are text.
STREAM_MEDIA_TYPES = ["application/x-ndjson", "text/event-stream"]


def lambda_handler(app: ASGI) -> Mangum:
    # lifespan="off": Mangum would run startup/shutdown on every invocation; the app's
    # long-lived clients are created once per container, at import.
    return Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, *STREAM_MEDIA_TYPES])
