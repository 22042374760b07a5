"""The translated stack created in moto's CloudFormation, then inspected through boto3 as after a deploy."""

from __future__ import annotations

import ast
import io
import json
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.deploy.sam import ARTIFACT_BUCKET, PARAMETERS, REGION, load_template, resources_of_type, translate


def _dummy_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def deployed() -> Iterator[dict[str, Any]]:
    cfn_template = translate()
    with mock_aws(), warnings.catch_warnings():
        # moto's CloudFormation has no AWS::ApiGatewayV2, AWS::Lambda::EventInvokeConfig or
        # AWS::CloudWatch::Alarm models and skips them with a warning; those are checked on the
        # translated template (test_template.py), the alarms also through PutMetricAlarm below.
        warnings.filterwarnings(
            "ignore", message="Tried to parse AWS::(ApiGatewayV2|Lambda::EventInvokeConfig|CloudWatch::Alarm)"
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
        for name in ("ServiceKitLayer", "ChatFunction", "RunnerFunction", "JobFailureFunction"):
            s3.put_object(Bucket=ARTIFACT_BUCKET, Key=f"{name}.zip", Body=_dummy_zip())
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        cloudformation.create_stack(
            StackName="ollama-chat",
            TemplateBody=json.dumps(cfn_template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = cloudformation.describe_stacks(StackName="ollama-chat")["Stacks"][0]
        resources = cloudformation.describe_stack_resources(StackName="ollama-chat")["StackResources"]
        physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if "PhysicalResourceId" in r}
        yield {"stack": stack, "physical": physical, "lambda": boto3.client("lambda", region_name=REGION)}


def test_stack_is_created(deployed: dict[str, Any]) -> None:
    assert deployed["stack"]["StackStatus"] == "CREATE_COMPLETE"
    assert {"ChatFunction", "RunnerFunction", "ChatFunctionRole", "RunnerFunctionRole"} <= set(deployed["physical"])


def test_runner_reserved_concurrency_is_one(deployed: dict[str, Any]) -> None:
    runner = deployed["physical"]["RunnerFunction"]
    concurrency = deployed["lambda"].get_function_concurrency(FunctionName=runner)
    assert concurrency["ReservedConcurrentExecutions"] == 1


def test_timeouts_and_environment(deployed: dict[str, Any]) -> None:
    aws_lambda, physical = deployed["lambda"], deployed["physical"]
    chat = aws_lambda.get_function_configuration(FunctionName=physical["ChatFunction"])
    runner = aws_lambda.get_function_configuration(FunctionName=physical["RunnerFunction"])
    assert (chat["Timeout"], runner["Timeout"]) == (29, 900)
    assert chat["Handler"] == "chat.handler.handler"
    assert runner["Handler"] == "runner.handler.handler"
    assert chat["Environment"]["Variables"] == {
        "RUNNER_FUNCTION": physical["RunnerFunction"],
        "DEFAULT_MODEL": "tinyllama",
        "ALLOWED_MODELS": "tinyllama",
        "CHAT_DEADLINE_S": "27",
        "JOBS_TABLE": physical["JobsTable"],
        "JOB_START_DEADLINE_S": "900",
        "AUTH": "required",
    }
    assert runner["Environment"]["Variables"] == {
        "OLLAMA_HOST": "http://10.0.1.23:11434",
        "DEFAULT_MODEL": "tinyllama",
        "OLLAMA_TIMEOUT_S": "840",
        "JOBS_TABLE": physical["JobsTable"],
        "STATE_DIR": "/tmp/serverless-ollama-chat",
    }
    assert "VpcConfig" not in runner or not runner["VpcConfig"].get("SubnetIds")


def test_api_gateway_cannot_invoke_the_runner(deployed: dict[str, Any]) -> None:
    aws_lambda, physical = deployed["lambda"], deployed["physical"]
    with pytest.raises(ClientError) as missing:
        aws_lambda.get_policy(FunctionName=physical["RunnerFunction"])
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    chat_policy = json.loads(aws_lambda.get_policy(FunctionName=physical["ChatFunction"])["Policy"])
    principals = {s["Principal"]["Service"] for s in chat_policy["Statement"]}
    assert principals == {"apigateway.amazonaws.com"}


def test_chat_role_may_invoke_only_the_runner_and_use_the_table(deployed: dict[str, Any]) -> None:
    iam = boto3.client("iam", region_name=REGION)
    role_name = deployed["physical"]["ChatFunctionRole"]
    policies = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    statements: list[Any] = []
    for name in policies:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            # moto keeps an inline policy created by CloudFormation as the repr of a dict.
            document = ast.literal_eval(document)
        statements.extend(document["Statement"])
    runner_arn = deployed["lambda"].get_function(FunctionName=deployed["physical"]["RunnerFunction"])["Configuration"][
        "FunctionArn"
    ]
    table_arn = boto3.client("dynamodb", region_name=REGION).describe_table(
        TableName=deployed["physical"]["JobsTable"]
    )["Table"]["TableArn"]
    assert statements == [
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction", "lambda:GetFunction"], "Resource": runner_arn},
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
            "Resource": table_arn,
        },
        {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": f"{table_arn}/index/by_owner"},
    ]


def _resolved(value: Any, physical: dict[str, str]) -> Any:
    """A translated alarm property with its Refs resolved and its Fn::If on (absent) AlarmTopicArn taken."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return physical.get(value["Ref"], value["Ref"])
        if set(value) == {"Fn::If"}:
            return None  # only HasAlarmTopic here, false in this stack
        return {k: r for k, v in value.items() if (r := _resolved(v, physical)) is not None}
    if isinstance(value, list):
        return [_resolved(v, physical) for v in value]
    return value


def test_the_alarms_are_accepted_by_cloudwatch(deployed: dict[str, Any]) -> None:
    """moto's CloudFormation has no AWS::CloudWatch::Alarm: each translated alarm goes through PutMetricAlarm
    (botocore validates every field), then is read back."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    physical = deployed["physical"]
    alarms = resources_of_type(translate(), "AWS::CloudWatch::Alarm")
    defaults = {name: p.get("Default") for name, p in load_template()["Parameters"].items()}
    names = {**defaults, **physical}
    for name, alarm in alarms.items():
        properties = {k: v for k, v in _resolved(alarm["Properties"], names).items() if v is not None}
        properties["Threshold"] = float(properties["Threshold"])
        cloudwatch.put_metric_alarm(AlarmName=name, **properties)
    created = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(created) == set(alarms)
    assert created["RunnerErrorsAlarm"]["Dimensions"] == [{"Name": "FunctionName", "Value": physical["RunnerFunction"]}]
    assert created["JobFailuresAlarm"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": physical["JobFailureFunction"]}
    ]
    assert all(a.get("AlarmActions", []) == [] for a in created.values())  # no AlarmTopicArn given
    assert [q["Id"] for q in created["Chat5xxRateAlarm"]["Metrics"]] == ["errors", "requests", "rate"]
    oldest = created["OldestTicketAgeAlarm"]
    assert (oldest["Namespace"], oldest["MetricName"], oldest["Threshold"]) == (
        "ServerlessOllamaChat",
        "OldestTicketAgeSeconds",
        300.0,
    )
    assert oldest["Dimensions"] == [{"Name": "service", "Value": "runner"}]


def test_every_function_has_a_log_group_with_retention(deployed: dict[str, Any]) -> None:
    logs = boto3.client("logs", region_name=REGION)
    groups = {g["logGroupName"]: g for g in logs.describe_log_groups()["logGroups"]}
    for function in ("ChatFunction", "RunnerFunction", "JobFailureFunction"):
        group = groups[f"/aws/lambda/{deployed['physical'][function]}"]
        assert group["retentionInDays"] == 14
