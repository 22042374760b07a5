"""A Lambda context object like the one AWS passes to a handler (what Mangum and our runner read)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

DEFAULT_TIMEOUT_S = 30.0


@dataclass
class LambdaContext:
    function_name: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{time.strftime('%Y/%m/%d')}/[{self.function_version}]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))
