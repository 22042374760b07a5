"""On AWS: readiness that never invokes the runner, and the keys CLI on the DynamoDB table (moto)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.lambda_transport import LambdaInvokeTransport
from chat.readiness import AwsReadiness
from chat.settings import Settings as ChatSettings
from moto import mock_aws
from runner.settings import Settings as RunnerSettings
from servicekit.errors import NotReady
from servicekit.lambda_adapter import lambda_handler
from servicekit.state.factory import StateSettings

from tests.auth.helpers import keys
from tests.conftest import runner_app_for
from tests.fake_ollama import FakeOllama
from tests.jobs.stores import REGION, TABLE, create_jobs_table
from tests.lambda_standin import InProcessLambda

RUNNER = "serverless-ollama-chat-RunnerFunction-ABC123"
CREDENTIALS: dict[str, Any] = {
    "region_name": REGION,
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The CLI uses boto3's standard credential chain, as a user's shell would.
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        create_jobs_table(boto3.resource("dynamodb", **CREDENTIALS))
        yield


def deploy_runner_function() -> Any:
    iam = boto3.client("iam", **CREDENTIALS)
    role = iam.create_role(RoleName="runner", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    functions = boto3.client("lambda", **CREDENTIALS)
    functions.create_function(
        FunctionName=RUNNER,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    functions.put_function_concurrency(FunctionName=RUNNER, ReservedConcurrentExecutions=1)
    return functions


async def test_readyz_on_aws_never_invokes_the_runner(
    aws: None, fake: FakeOllama, runner_settings: RunnerSettings
) -> None:
    functions = deploy_runner_function()
    runner = InProcessLambda(lambda_handler(runner_app_for(fake, runner_settings)))
    settings = ChatSettings(runner_function=RUNNER, state=StateSettings(table=TABLE), auth="required")
    tables = boto3.client("dynamodb", **CREDENTIALS)
    readiness = AwsReadiness(RUNNER, TABLE, connect=lambda: (functions, tables))
    transport = LambdaInvokeTransport(runner, RUNNER, default_deadline_s=settings.chat_deadline_s)
    app = create_chat_app(settings, runner_transport=transport, readiness=readiness)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://chat.test") as chat:
            answers = [await chat.get("/readyz") for _ in range(20)]  # a probe loop
    finally:
        runner.close()
    assert {r.status_code for r in answers} == {200}
    assert answers[0].json() == {
        "status": "ok",
        "runner": {"state": "Active", "reserved_concurrency": 1},
        "table": {"status": "ACTIVE"},
    }
    assert runner.invocations == []


async def test_readyz_on_aws_is_503_when_the_runner_function_is_missing(aws: None) -> None:
    clients = (boto3.client("lambda", **CREDENTIALS), boto3.client("dynamodb", **CREDENTIALS))
    readiness = AwsReadiness(RUNNER, TABLE, connect=lambda: clients)
    settings = ChatSettings(runner_function=RUNNER, state=StateSettings(table=TABLE))
    app = create_chat_app(
        settings, runner_transport=httpx.MockTransport(lambda r: httpx.Response(500)), readiness=readiness
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://chat.test") as chat:
        response = await chat.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"


def test_the_keys_cli_adds_lists_and_revokes_on_dynamodb(aws: None) -> None:
    state = StateSettings(table=TABLE)
    code, out = keys(state, "add", "alice", "--weight", "2", "--models", "llama3.2")
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert key.startswith("oc-")
    assert keys(state, "add", "alice")[0] == 1  # names are unique
    code, listing = keys(state, "list")
    assert code == 0
    assert "alice" in listing
    assert key not in listing
    assert keys(state, "revoke", "alice")[0] == 0
    assert keys(state, "revoke", "alice")[0] == 1  # already revoked
    code, listing = keys(state, "list")
    assert "alice" in listing
    assert listing.count("Z") >= 2  # created and revoked timestamps
    # Only the hash is stored.
    items = boto3.resource("dynamodb", **CREDENTIALS).Table(TABLE).scan()["Items"]
    assert not any(key in str(item) for item in items)


class ControlPlane:
    """The two control-plane answers readiness reads, in the states a test gives (moto's are always ready)."""

    def __init__(self, state: str, table_status: str) -> None:
        self.state = state
        self.table_status = table_status

    def get_function(self, *, FunctionName: str) -> dict[str, Any]:
        return {"Configuration": {"State": self.state}, "Concurrency": {"ReservedConcurrentExecutions": 1}}

    def describe_table(self, *, TableName: str) -> dict[str, Any]:
        return {"Table": {"TableStatus": self.table_status}}


@pytest.mark.parametrize(
    ("state", "table_status", "message"),
    [("Pending", "ACTIVE", "The runner function is Pending."), ("Active", "UPDATING", "The state table is UPDATING.")],
)
async def test_readyz_on_aws_is_503_until_the_function_and_table_are_ready(
    state: str, table_status: str, message: str
) -> None:
    plane = ControlPlane(state, table_status)
    readiness = AwsReadiness(RUNNER, TABLE, connect=lambda: (plane, plane))
    with pytest.raises(NotReady) as refused:
        await readiness.check("r")
    assert refused.value.message == message
