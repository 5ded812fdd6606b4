#!/usr/bin/env python3
"""Writes the concrete IAM identity policies of the translated template, for
the offline IAM check (infra/local/iam/check.mjs).

Usage (with the test bed's virtualenv, after translate.py):

    .cache/venv/bin/python infra/local/sam/policies.py [--sam .cache/sam]
        [--out .cache/sam/policies.json] [--region R ...] [--set NAME ...]

    .cache/venv/bin/python infra/local/sam/policies.py --batch DIR ...

--batch is for check.mjs's self-test: for each DIR it runs translate.py on
DIR/template.yaml into DIR (its main(), in this process: importing the SAM
translator once saves about a second a template) and writes DIR/policies.json.

For every region translate.py wrote (OUT/translated.REGION.json) and every
parameter set (PARAMETER_SETS), the template is resolved with cfn.Resolver
and one "document" is written per (region, set) with:

  principals  ScheduledRefreshFunction and RefreshApiFunction: the identity
              policies of the role each function's Role points to (inline
              policies, AWS::IAM::Policy and ManagedPolicy resources attached
              to it, and AWS managed policies, embedded from KNOWN_AWS_MANAGED);
              Consumer: the ConsumerPolicy managed policy, as attached to a
              hypothetical business-server role.
  facts       what the IAM cases and recorded calls render their ARNs from:
              partition, region, URL suffix, account, ParameterPrefix, table
              ARN, log group ARNs, API id, the KMS key (or null).
  resourcePolicies  resource-side policies the evaluator needs: the KMS key
              policy (the default one, which lets IAM policies decide).

Nothing here calls AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cfn import ACCOUNT, PARTITIONS, Resolver, load  # noqa: E402

# IAM resource types that grant a role nothing by themselves.
KNOWN_OTHER_IAM = ("AWS::IAM::Role",)

# The functions whose roles are checked, and the consumer policy.
FUNCTIONS = ("ScheduledRefreshFunction", "RefreshApiFunction")
CONSUMER_POLICY = "ConsumerPolicy"

# The customer managed key of the "kms" parameter set, and of the KMS cases
# in every set (with no key configured they must all be denied).
TEST_KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def test_key_arn(partition: str, region: str) -> str:
    return f"arn:{partition}:kms:{region}:{ACCOUNT}:key/{TEST_KEY_ID}"


# Parameter sets: name -> function(partition, region) -> parameter values.
# "defaults": no KMS key, no VPC. "kms": a customer managed key and a VPC, so
# every conditional statement and managed policy is present.
PARAMETER_SETS = {
    "defaults": lambda partition, region: {},
    "kms": lambda partition, region: {
        "KmsKeyArn": test_key_arn(partition, region),
        "SubnetIds": "subnet-1",
        "SecurityGroupIds": "sg-1",
    },
}

# AWS managed policies the roles may attach, as AWS ships them (the default
# version; AWSLambdaVPCAccessExecutionRole: v3 of 2024-01-05, assumed the same
# in aws-cn). An ARN not in this table fails the run: embed its
# document here first.
KNOWN_AWS_MANAGED = {
    "service-role/AWSLambdaVPCAccessExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AWSLambdaVPCAccessExecutionPermissions",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                "Resource": "*",
            }
        ],
    },
}


def default_key_policy(partition: str) -> dict:
    """The key policy KMS gives a key created without one: the account's IAM
    policies decide who may use it. Without a key policy that trusts the
    account, no identity policy can allow a KMS call (and iam-simulate models
    that), so the check supplies this one for KMS requests."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }


class PolicyError(Exception):
    """The template's policies cannot be made concrete."""


def _getatt_target(value, attr: str = "Arn") -> str | None:
    """The logical ID in an unresolved {"Fn::GetAtt": [X, attr]}, else None."""
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
        arg = value["Fn::GetAtt"]
        res, a = arg if isinstance(arg, list) else arg.split(".", 1)
        if a == attr:
            return res
    return None


def _ref_target(value) -> str | None:
    """The name in an unresolved {"Ref": X}, else None."""
    if isinstance(value, dict) and list(value) == ["Ref"]:
        return value["Ref"]
    return None


def _managed_policy(arn: str, partition: str, customer: dict[str, dict]) -> dict:
    """A managed policy ARN as {name, source, arn, document}."""
    aws_prefix = f"arn:{partition}:iam::aws:policy/"
    if arn.startswith(aws_prefix):
        path = arn[len(aws_prefix):]
        if path not in KNOWN_AWS_MANAGED:
            raise PolicyError(f"AWS managed policy {arn} is not in KNOWN_AWS_MANAGED (policies.py): embed its document")
        return {"name": path.rsplit("/", 1)[-1], "source": "aws-managed", "arn": arn, "document": KNOWN_AWS_MANAGED[path]}
    if arn in customer:
        return customer[arn]
    raise PolicyError(f"managed policy {arn} is neither an AWS managed policy for partition {partition} nor one of the template's")


def document(template: dict, region: str, set_name: str, stack: str = "wxtoken") -> dict:
    """The principals, facts and resource policies of one (region, set)."""
    partition, url_suffix = PARTITIONS[region]
    params = PARAMETER_SETS[set_name](partition, region)
    rv = Resolver(template, region, stack, params)
    raw = template["Resources"]
    res = rv.resources()  # only resources whose Condition holds, resolved

    # The template's own managed policies (by ARN) and the policies attached
    # to each role by name (AWS::IAM::Policy / ManagedPolicy with Roles,
    # AWS::IAM::RolePolicy with RoleName). Any other IAM type that could grant
    # a role something is refused rather than ignored.
    customer: dict[str, dict] = {}
    attached: dict[str, list[dict]] = {}
    for logical, r in res.items():
        if r["Type"] not in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::IAM::RolePolicy"):
            if r["Type"].startswith("AWS::IAM::") and r["Type"] not in KNOWN_OTHER_IAM:
                raise PolicyError(f"{logical}: {r['Type']} is not evaluated by this check; extend policies.py")
            continue
        props = r.get("Properties") or {}
        source = {"AWS::IAM::ManagedPolicy": "managed", "AWS::IAM::Policy": "policy"}.get(r["Type"], "rolepolicy")
        entry = {"name": logical, "source": source, "document": props["PolicyDocument"]}
        if source == "managed":
            entry["arn"] = rv.physical(logical)
            customer[entry["arn"]] = entry
        roles = list(props.get("Roles") or [])
        if props.get("RoleName"):
            roles.append(props["RoleName"])
        for role in roles:
            attached.setdefault(role, []).append(entry)

    principals: dict[str, dict] = {}
    log_groups: dict[str, str] = {}
    for fn in FUNCTIONS:
        if fn not in res:
            raise PolicyError(f"{fn}: not in the translated template (for set {set_name})")
        fprops = raw[fn].get("Properties") or {}
        role = _getatt_target(fprops.get("Role"))
        if role is None or raw.get(role, {}).get("Type") != "AWS::IAM::Role":
            raise PolicyError(f"{fn}: Role is not !GetAtt <AWS::IAM::Role>.Arn: {fprops.get('Role')!r}")
        rprops = res[role].get("Properties") or {}
        pols = [
            {"name": p["PolicyName"], "source": "inline", "document": p["PolicyDocument"]}
            for p in rprops.get("Policies") or []
        ]
        pols += attached.get(rv.physical(role), [])
        pols += [_managed_policy(arn, partition, customer) for arn in rprops.get("ManagedPolicyArns") or []]
        lg = _ref_target((fprops.get("LoggingConfig") or {}).get("LogGroup"))
        principals[fn] = {
            "kind": "function",
            "role": role,
            "arn": rv.attribute(role, "Arn"),
            "logGroup": lg,
            "policies": pols,
        }

    if CONSUMER_POLICY not in res:
        raise PolicyError(f"{CONSUMER_POLICY}: not in the translated template")
    principals["Consumer"] = {
        "kind": "consumer",
        "role": "consumer",  # a business server's role with ConsumerPolicy attached
        "arn": f"arn:{partition}:iam::{ACCOUNT}:role/wxtoken-consumer",
        "policies": [customer[rv.physical(CONSUMER_POLICY)]],
    }

    # Log groups by logical ID, as the ARN of the group itself (no ":*").
    for logical, r in res.items():
        if r["Type"] == "AWS::Logs::LogGroup":
            log_groups[logical] = rv.attribute(logical, "Arn").removesuffix(":*")

    apis = [k for k, r in res.items() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    if len(apis) != 1:
        raise PolicyError(f"expected one AWS::ApiGatewayV2::Api, found {apis}")
    api_id = rv.physical(apis[0])
    kms = rv.params.get("KmsKeyArn") or None
    facts = {
        "account": ACCOUNT,
        "region": region,
        "partition": partition,
        "urlSuffix": url_suffix,
        "stack": stack,
        "prefix": rv.ref("ParameterPrefix"),
        "table": rv.attribute("StateTable", "Arn"),
        "apiId": api_id,
        "api": f"arn:{partition}:execute-api:{region}:{ACCOUNT}:{api_id}",
        "logGroups": log_groups,
        "kmsKeyArn": kms,
        # The key the KMS cases name when no key is configured.
        "testKmsKeyArn": test_key_arn(partition, region),
    }
    return {
        "region": region,
        "set": set_name,
        "params": {k: v for k, v in params.items()},
        "facts": facts,
        "principals": principals,
        "resourcePolicies": {"kms": default_key_policy(partition)},
    }


def main(argv: list[str]) -> int:
    root = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sam", default=os.path.join(root, ".cache", "sam"), help="translate.py's output directory")
    ap.add_argument("--out", help="output file (default SAM/policies.json)")
    ap.add_argument("--region", action="append", choices=sorted(PARTITIONS))
    ap.add_argument("--set", action="append", choices=sorted(PARAMETER_SETS))
    ap.add_argument("--batch", nargs="+", metavar="DIR", help="translate DIR/template.yaml and write DIR/policies.json, for each DIR")
    args = ap.parse_args(argv)
    if args.batch:
        import contextlib
        import io

        import translate

        for d in args.batch:
            log = io.StringIO()  # translate.py's progress lines; shown only on failure
            with contextlib.redirect_stdout(log):
                rc = translate.main(["--template", os.path.join(d, "template.yaml"), "--out", d])
            if rc != 0:
                print(log.getvalue(), end="", file=sys.stderr)
                return rc
            rc = main(["--sam", d] + [f"--region={r}" for r in args.region or []] + [f"--set={x}" for x in args.set or []])
            if rc != 0:
                return rc
        return 0
    out_path = args.out or os.path.join(args.sam, "policies.json")
    regions = args.region or sorted(PARTITIONS, key=lambda r: r != "us-east-1")
    docs = []
    for region in regions:
        path = os.path.join(args.sam, f"translated.{region}.json")
        if not os.path.exists(path):
            print(f"policies: {path} missing: run infra/local/sam/translate.py first", file=sys.stderr)
            return 1
        template = load(path)
        for set_name in args.set or PARAMETER_SETS:
            try:
                docs.append(document(template, region, set_name))
            except (PolicyError, KeyError, ValueError) as e:
                print(f"policies: {path} ({set_name}): {type(e).__name__}: {e}", file=sys.stderr)
                return 1
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"account": ACCOUNT, "documents": docs}, f, indent=1, sort_keys=True)
        f.write("\n")
    names = ", ".join(f"{d['region']}/{d['set']}" for d in docs)
    print(f"policies: {len(docs)} documents ({names}): {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
