#!/usr/bin/env python3
"""Translates template.yaml with the SAM translator, offline, the way
`sam package` and CloudFormation's AWS::Serverless transform would.

Usage (with the test bed's virtualenv):

    .cache/venv/bin/python infra/local/sam/translate.py [--template template.yaml]
        [--out .cache/sam] [--region us-east-1 --region cn-north-1]

For each region it writes OUT/translated.REGION.json: the CloudFormation
template CloudFormation would receive. What `sam package` does first is
done here too: every function's CodeUri becomes an S3 location
(s3://wxtoken-artifacts/<FunctionLogicalId>.zip). The translator's
managed-policy loader is a fixed table (no IAM ListPolicies call), the
region and partition come from the argument, and no AWS credentials are
needed or used.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cfn import ACCOUNT, PARTITIONS, load, partition_of  # noqa: E402

ARTIFACT_BUCKET = "wxtoken-artifacts"

# The AWS managed policies SAM may attach by name. The template's explicit
# roles attach none, so SAM needs none of these; the table only keeps the
# translator from asking IAM.
MANAGED_POLICIES = (
    "AWSLambdaBasicExecutionRole",
    "AWSLambdaVPCAccessExecutionRole",
    "AWSLambdaRole",
)


class OfflinePolicyLoader:
    """SAM's ManagedPolicyLoader without the IAM call."""

    def __init__(self, partition: str) -> None:
        self.partition = partition

    def load(self) -> dict[str, str]:
        return {
            name: f"arn:{self.partition}:iam::aws:policy/service-role/{name}" for name in MANAGED_POLICIES
        }


def package(template: dict) -> dict:
    """What `sam package` does to the template: code locations in S3."""
    t = copy.deepcopy(template)
    (t.get("Globals") or {}).get("Function", {}).pop("CodeUri", None)
    for name, r in t.get("Resources", {}).items():
        if r.get("Type") == "AWS::Serverless::Function":
            r.setdefault("Properties", {})["CodeUri"] = f"s3://{ARTIFACT_BUCKET}/{name}.zip"
    return t


def translate(template: dict, region: str) -> dict:
    """The template after the AWS::Serverless-2016-10-31 transform in region."""
    from samtranslator.sdk.parameter import SamParameterValues
    from samtranslator.translator import arn_generator
    from samtranslator.translator.transform import transform

    partition, url_suffix = partition_of(region)
    os.environ["AWS_DEFAULT_REGION"] = region
    os.environ.pop("AWS_REGION", None)
    arn_generator._get_region_from_session.cache_clear()  # one process, several regions
    params = SamParameterValues({
        "AWS::Region": region,
        "AWS::Partition": partition,
        "AWS::URLSuffix": url_suffix,
        "AWS::AccountId": ACCOUNT,
        "AWS::StackName": "wxtoken",
    })
    packaged = package(template)
    params.add_default_parameter_values(packaged)
    return transform(packaged, params.parameter_values, OfflinePolicyLoader(partition))


def main(argv: list[str]) -> int:
    root = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--template", default=os.path.join(root, "template.yaml"))
    ap.add_argument("--out", default=os.path.join(root, ".cache", "sam"))
    ap.add_argument("--region", action="append", help="default: " + " and ".join(PARTITIONS))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    template = load(args.template)
    for region in args.region or sorted(PARTITIONS, key=lambda r: r != "us-east-1"):
        try:
            out = translate(template, region)
        except Exception as e:  # the translator's own errors name the resource
            print(f"translate {args.template} for {region}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        path = os.path.join(args.out, f"translated.{region}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"translated {args.template} for {region}: {path} ({len(out.get('Resources', {}))} resources)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
