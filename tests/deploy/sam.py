"""template.yaml, packaged and translated offline the way ``sam deploy`` would (no AWS reached)."""

from __future__ import annotations

import copy
import os
from typing import Any

from cfnlint.decode import cfn_yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from tests.servers import REPO

TEMPLATE = REPO / "template.yaml"
REGION = "us-east-1"
ARTIFACT_BUCKET = "sam-artifacts-123456789012"
PARAMETERS = {"OllamaHost": "http://10.0.1.23:11434"}


def load_template() -> dict[str, Any]:
    template: dict[str, Any] = cfn_yaml.loads(TEMPLATE.read_text(), str(TEMPLATE))
    return template


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """Replace local code paths with S3 locations, as ``sam package`` does."""
    result = copy.deepcopy(template)
    for name, resource in result["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://{ARTIFACT_BUCKET}/{name}.zip"
    return result


def translate(template: dict[str, Any] | None = None, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation that CloudFormation itself would get from the SAM transform."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    source = packaged(template or load_template())
    translator = Translator(managed_policy_map={}, sam_parser=Parser())
    values = {**PARAMETERS, **(parameters or {}), "AWS::Region": REGION, "AWS::Partition": "aws"}
    cfn: dict[str, Any] = translator.translate(sam_template=source, parameter_values=values)
    return cfn


def resources_of_type(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in cfn["Resources"].items() if r["Type"] == kind}
