"""template.yaml: the SAM transform offline, cfn-lint on its output, and what the stack must (not) allow."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from runner.settings import DEFAULT_QUEUE_TIMEOUT_S
from servicekit.observe.emf import EmfSlotMetrics
from servicekit.queue.model import Snapshot

from tests.deploy.sam import REGION, load_template, resources_of_type, translate


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translate()


def test_translated_template_has_no_cfn_lint_errors(cfn: dict[str, Any]) -> None:
    # cfn-lint >= 1.54 on the raw SAM template no longer checks the transformed resources
    # (cycles, timeouts): lint what the transform produces.
    matches = lint(json.dumps(cfn), config=ManualArgs(regions=[REGION]))
    errors = [f"{m.rule.id} {m.message} at {m.path}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_runner_is_the_slot_and_is_never_behind_api_gateway(cfn: dict[str, Any]) -> None:
    functions = resources_of_type(cfn, "AWS::Lambda::Function")
    runner = functions["RunnerFunction"]["Properties"]
    assert runner["ReservedConcurrentExecutions"] == 1
    assert runner["Timeout"] == 900
    assert runner["Handler"] == "runner.handler.handler"
    assert runner["Environment"]["Variables"]["OLLAMA_HOST"] == {"Ref": "OllamaHost"}
    permissions = resources_of_type(cfn, "AWS::Lambda::Permission")
    targets = {json.dumps(p["Properties"]["FunctionName"]) for p in permissions.values()}
    assert json.dumps({"Ref": "RunnerFunction"}) not in targets
    assert all(p["Properties"]["Principal"] == "apigateway.amazonaws.com" for p in permissions.values())
    assert resources_of_type(cfn, "AWS::Lambda::Url") == {}


def test_chat_fits_inside_the_http_api_limit_and_finds_the_runner_by_name(cfn: dict[str, Any]) -> None:
    chat = resources_of_type(cfn, "AWS::Lambda::Function")["ChatFunction"]["Properties"]
    assert chat["Timeout"] <= 29
    assert chat["Runtime"] in ("python3.12", "python3.13")
    assert chat["Architectures"] == ["arm64"]
    assert chat["Handler"] == "chat.handler.handler"
    variables = chat["Environment"]["Variables"]
    assert variables["RUNNER_FUNCTION"] == {"Ref": "RunnerFunction"}
    assert float(variables["CHAT_DEADLINE_S"]) < chat["Timeout"]
    assert "RUNNER_URL" not in variables
    assert variables["AUTH"] == "required"


def _statements(cfn: dict[str, Any], role: str) -> list[dict[str, Any]]:
    properties = resources_of_type(cfn, "AWS::IAM::Role")[role]["Properties"]
    return [s for policy in properties.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


TABLE_ARN = {"Fn::GetAtt": ["JobsTable", "Arn"]}
OWNER_INDEX_ARN = {"Fn::Sub": "${JobsTable.Arn}/index/by_owner"}


def test_chat_may_invoke_the_runner_and_use_the_jobs_table_and_nothing_more(cfn: dict[str, Any]) -> None:
    assert _statements(cfn, "ChatFunctionRole") == [
        # GetFunction: /readyz asks the control plane instead of invoking the runner.
        {
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction", "lambda:GetFunction"],
            "Resource": {"Fn::GetAtt": ["RunnerFunction", "Arn"]},
        },
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:DescribeTable",
                "dynamodb:BatchGetItem",
            ],
            "Resource": TABLE_ARN,
        },
        {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": OWNER_INDEX_ARN},
    ]
    role = resources_of_type(cfn, "AWS::IAM::Role")["ChatFunctionRole"]["Properties"]
    managed = [json.dumps(arn) for arn in role["ManagedPolicyArns"]]
    # SAM attaches X-Ray's write-only policy whenever Tracing is set (here: by a parameter).
    assert len(managed) == 2
    assert "AWSLambdaBasicExecutionRole" in managed[0]
    assert "AWSXrayWriteOnlyAccess" in managed[1]


def test_http_api_routes_go_to_chat_only(cfn: dict[str, Any]) -> None:
    template = load_template()
    events = template["Resources"]["ChatFunction"]["Properties"]["Events"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values()}
    assert routes == {
        ("POST", "/chat"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{id}"),
        ("DELETE", "/v1/jobs/{id}"),
        ("ANY", "/"),
        ("ANY", "/api/{proxy+}"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{id}"),
        ("GET", "/static/{proxy+}"),
        ("GET", "/v1/config"),
    }
    assert "Events" not in template["Resources"]["RunnerFunction"]["Properties"]
    api = resources_of_type(cfn, "AWS::ApiGatewayV2::Api")
    assert list(api) == ["ChatApi"]
    paths = api["ChatApi"]["Properties"]["Body"]["paths"]
    assert set(paths) == {
        "/chat",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/",
        "/api/{proxy+}",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/models/{id}",
        "/static/{proxy+}",
        "/v1/config",
    }
    for operations in paths.values():
        for operation in operations.values():
            uri = json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
            assert "ChatFunction" in uri
            assert "RunnerFunction" not in uri


def test_vpc_access_is_optional_and_only_for_the_runner(cfn: dict[str, Any]) -> None:
    functions = resources_of_type(cfn, "AWS::Lambda::Function")
    vpc = functions["RunnerFunction"]["Properties"]["VpcConfig"]
    assert vpc["Fn::If"][0] == "UseVpc"
    assert vpc["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert "VpcConfig" not in functions["ChatFunction"]["Properties"]
    assert "UseVpc" in cfn["Conditions"]


def test_every_function_ships_the_shared_layer_and_every_log_is_bounded(cfn: dict[str, Any]) -> None:
    (layer,) = resources_of_type(cfn, "AWS::Lambda::LayerVersion")
    functions = resources_of_type(cfn, "AWS::Lambda::Function")
    for function in functions.values():
        assert function["Properties"]["Layers"] == [{"Ref": layer}]
    groups = resources_of_type(cfn, "AWS::Logs::LogGroup")
    # One per function (JobFailureFunction's included), and the API's access log.
    assert {json.dumps(g["Properties"].get("LogGroupName")) for g in groups.values()} == {
        json.dumps({"Fn::Sub": f"/aws/lambda/${{{name}}}"}) for name in functions
    } | {"null"}
    assert len(groups) == len(functions) + 1
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())


def test_the_api_writes_access_logs(cfn: dict[str, Any]) -> None:
    (stage,) = resources_of_type(cfn, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ChatApiAccessLogGroup", "Arn"]}
    fields = json.loads(settings["Format"])  # one JSON object per request
    assert {"requestId", "route", "status", "latencyMs", "ip"} <= set(fields)


ALARMS = {
    "RunnerErrorsAlarm": ("AWS/Lambda", "Errors", "RunnerFunction"),
    "RunnerThrottlesAlarm": ("AWS/Lambda", "Throttles", "RunnerFunction"),
    "AsyncEventsDroppedAlarm": ("AWS/Lambda", "AsyncEventsDropped", "RunnerFunction"),
    "JobFailuresAlarm": ("AWS/Lambda", "Invocations", "JobFailureFunction"),
}


def test_alarms_watch_the_runner_the_failure_destination_and_the_apis_5xx_rate(cfn: dict[str, Any]) -> None:
    alarms = resources_of_type(cfn, "AWS::CloudWatch::Alarm")
    assert set(alarms) == {*ALARMS, "Chat5xxRateAlarm", "OldestTicketAgeAlarm"}
    for name, (namespace, metric, function) in ALARMS.items():
        properties = alarms[name]["Properties"]
        assert (properties["Namespace"], properties["MetricName"]) == (namespace, metric)
        assert properties["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
    rate = alarms["Chat5xxRateAlarm"]["Properties"]
    queries = {q["Id"]: q for q in rate["Metrics"]}
    assert queries["errors"]["MetricStat"]["Metric"]["MetricName"] == "5xx"
    assert queries["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    assert "errors / requests" in queries["rate"]["Expression"]
    for alarm in alarms.values():
        actions = alarm["Properties"]["AlarmActions"]
        assert actions == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"


def test_the_oldest_ticket_alarm_watches_the_metric_the_runner_writes(
    cfn: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The alarm's namespace, name and dimensions are exactly those of the EMF document the runner's
    slot writes when it reads the queue (a dimension more or less and CloudWatch sees no data)."""
    capsys.readouterr()
    EmfSlotMetrics("runner").queue_read(Snapshot(running=None, waiting=(), standings={}), now=1000.0)
    (document,) = [d for d in map(json.loads, capsys.readouterr().out.splitlines()) if "OldestTicketAgeSeconds" in d]
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    alarm = resources_of_type(cfn, "AWS::CloudWatch::Alarm")["OldestTicketAgeAlarm"]["Properties"]
    assert alarm["Namespace"] == directive["Namespace"]
    assert alarm["MetricName"] in [m["Name"] for m in directive["Metrics"]]
    assert directive["Dimensions"] == [[d["Name"] for d in alarm["Dimensions"]]]
    assert all(document[d["Name"]] == d["Value"] for d in alarm["Dimensions"])
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == {"Ref": "OldestTicketAlarmSeconds"}
    # The default matches the runner's own longest wait for a request (QUEUE_TIMEOUT_S).
    assert load_template()["Parameters"]["OldestTicketAlarmSeconds"]["Default"] == DEFAULT_QUEUE_TIMEOUT_S


def test_the_table_outlives_the_stack_and_can_be_restored(cfn: dict[str, Any]) -> None:
    table = resources_of_type(cfn, "AWS::DynamoDB::Table")["JobsTable"]
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_tracing_is_a_parameter(cfn: dict[str, Any]) -> None:
    for function in resources_of_type(cfn, "AWS::Lambda::Function").values():
        assert function["Properties"]["TracingConfig"] == {"Mode": {"Fn::If": ["UseTracing", "Active", "PassThrough"]}}
    assert load_template()["Parameters"]["Tracing"]["Default"] == "false"


def test_a_runner_in_a_vpc_gets_a_dynamodb_gateway_endpoint(cfn: dict[str, Any]) -> None:
    endpoint = resources_of_type(cfn, "AWS::EC2::VPCEndpoint")["DynamoDbEndpoint"]
    assert endpoint["Condition"] == "CreateDynamoDbEndpoint"
    assert endpoint["Properties"]["VpcEndpointType"] == "Gateway"
    assert endpoint["Properties"]["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb"}
    condition = json.dumps(cfn["Conditions"]["CreateDynamoDbEndpoint"])
    assert "UseVpc" in condition
    assert "VpcId" in condition
    assert "RouteTableIds" in condition


def test_outputs_give_the_chat_url(cfn: dict[str, Any]) -> None:
    assert cfn["Outputs"]["ChatUrl"]["Value"] == {
        "Fn::Sub": "https://${ChatApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/chat"
    }
    assert load_template()["Parameters"]["OllamaHost"].get("Default") is None  # required


def test_jobs_table_is_on_demand_with_a_ttl(cfn: dict[str, Any]) -> None:
    table = resources_of_type(cfn, "AWS::DynamoDB::Table")["JobsTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_jobs_table_has_the_owner_index_the_stores_query(cfn: dict[str, Any]) -> None:
    from servicekit.state.dynamo import OWNER_INDEX

    from tests.jobs.stores import moto_table

    table = resources_of_type(cfn, "AWS::DynamoDB::Table")["JobsTable"]["Properties"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == OWNER_INDEX
    assert index["KeySchema"] == [
        {"AttributeName": "owner", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert OWNER_INDEX_ARN["Fn::Sub"].endswith(f"/index/{OWNER_INDEX}")
    # the table the store tests run on (tests/jobs/stores.py, in moto) is this one
    with moto_table() as tested:
        (tested_index,) = tested.global_secondary_indexes
        assert (tested_index["IndexName"], tested_index["KeySchema"]) == (index["IndexName"], index["KeySchema"])
        assert tested_index["Projection"] == index["Projection"]
        assert sorted(map(str, tested.attribute_definitions)) == sorted(map(str, table["AttributeDefinitions"]))


def test_runner_kicks_are_retried_then_reach_the_failure_handler(cfn: dict[str, Any]) -> None:
    (config,) = resources_of_type(cfn, "AWS::Lambda::EventInvokeConfig").values()
    properties = config["Properties"]
    assert properties["FunctionName"] == {"Ref": "RunnerFunction"}
    assert properties["MaximumRetryAttempts"] == 2  # a kick is harmless twice: a retry resumes a dead drain
    assert properties["MaximumEventAgeInSeconds"] == 900
    on_failure = properties["DestinationConfig"]["OnFailure"]["Destination"]
    assert on_failure == {"Fn::GetAtt": ["JobFailureFunction", "Arn"]}
    chat_env = resources_of_type(cfn, "AWS::Lambda::Function")["ChatFunction"]["Properties"]["Environment"]
    assert chat_env["Variables"]["JOB_START_DEADLINE_S"] == str(properties["MaximumEventAgeInSeconds"])
    failures = resources_of_type(cfn, "AWS::Lambda::Function")["JobFailureFunction"]["Properties"]
    assert failures["Handler"] == "runner.job_failures.handler"


def test_runner_and_failure_handler_get_only_the_table_actions_they_need(cfn: dict[str, Any]) -> None:
    runner_needs = {
        "Effect": "Allow",
        "Resource": TABLE_ARN,
        "Action": [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchGetItem",
        ],
    }
    runner = _statements(cfn, "RunnerFunctionRole")
    assert runner_needs in runner
    # besides the table, only what SAM adds to reach the on-failure destination
    others = [s for s in runner if s != runner_needs]
    assert all("lambda:InvokeFunction" in json.dumps(s["Action"]) for s in others)
    assert all("JobFailureFunction" in json.dumps(s["Resource"]) for s in others)
    needed = {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"], "Resource": TABLE_ARN}
    assert _statements(cfn, "JobFailureFunctionRole") == [needed]


def test_the_runner_may_invoke_itself_and_nothing_else(cfn: dict[str, Any]) -> None:
    """A drain hands over before the 900 s limit with one asynchronous invoke of its own function."""
    policy = cfn["Resources"]["RunnerInvokesItself"]["Properties"]
    assert policy["Roles"] == [{"Ref": "RunnerFunctionRole"}]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": {"Fn::GetAtt": ["RunnerFunction", "Arn"]}}
    ]


def test_sam_builds_every_function_and_the_layer_with_compiled_bytecode() -> None:
    """BuildMethod makefile: each CodeUri/ContentUri has a Makefile with the build-<LogicalId> target."""
    from tests.servers import REPO

    resources = load_template()["Resources"]
    built = {name: r for name, r in resources.items() if r["Type"].startswith("AWS::Serverless::") and "Metadata" in r}
    assert set(built) == {"ServiceKitLayer", "ChatFunction", "RunnerFunction", "JobFailureFunction"}
    for name, resource in built.items():
        assert resource["Metadata"]["BuildMethod"] == "makefile"
        properties = resource["Properties"]
        makefile = (REPO / (properties.get("CodeUri") or properties["ContentUri"]) / "Makefile").read_text()
        assert re.search(rf"^[^#\n]*\bbuild-{name}\b[^\n]*:", makefile, re.MULTILINE), f"no build-{name} target"
        assert "$(call compile," in makefile
    rules = (REPO / "deploy" / "lambda-build.mk").read_text()
    assert "--invalidation-mode unchecked-hash" in rules  # used whatever mtimes the zip gives
    assert "manylinux2014_aarch64" in rules  # the functions' architecture
    assert "sys.version_info[:2] == (3, 12)" in rules  # bytecode for Lambda's Python only
