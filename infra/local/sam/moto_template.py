#!/usr/bin/env python3
"""Prepares a translated template (translate.py's output) for moto's
CloudFormation, which functions/deploy_test.go deploys it to.

Usage (with the test bed's virtualenv):

    .cache/venv/bin/python infra/local/sam/moto_template.py --in TRANSLATED.json
        --out MOTO.json [--region us-east-1] [--param Name=Value ...]

Pass the same parameter values the stack is created with: conditions are
decided here for them.

Only what moto 5.x evaluates differently from CloudFormation is changed;
everything else (Ref, Fn::GetAtt, Fn::Sub, parameters, the Conditions
section) is left for moto to resolve, so the deployment still exercises
moto's own reference resolution:

1. Every Fn::If is replaced by the branch its condition selects, decided
   by cfn.Resolver, and every {"Ref": "AWS::NoValue"} is removed from the
   list or object that holds it. Why: moto's clean_json keeps AWS::NoValue
   as a None element of a list, so a statement list such as
   ConsumerPolicy's [ReadTokens, !If [HasKmsKey, ..., !Ref AWS::NoValue],
   RefreshAndStatus] reaches IAM with a null statement and CreateStack fails
   with "MalformedPolicyDocument: Syntax errors in policy". And moto's
   Fn::Equals compares values without CloudFormation's string conversion, so
   HasApiReservedConcurrency (!Equals [!Ref ApiReservedConcurrency, "0"],
   where the Number parameter is the integer 0) is wrongly true in moto and
   would give the API function ReservedConcurrentExecutions 0.

2. A Ref to a Number parameter used as a Lambda environment variable is
   wrapped in Fn::Join ["", [Ref]]. Why: moto passes Number parameters on as
   integers, so WXTOKEN_CONCURRENCY: !Ref RefreshConcurrency became the JSON
   number 8 in GetFunctionConfiguration, which the AWS SDK for Go rejects
   ("deserialization failed, expected string, got 4"; environment values are
   strings). CloudFormation itself gives every Ref to a parameter as a
   string; Fn::Join of one item is the identity there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cfn import Resolver  # noqa: E402

_DROP = object()


def decide_conditions(v, resolver: Resolver):
    """v with every Fn::If replaced by its selected branch and AWS::NoValue
    removed (change 1 of the module comment)."""
    if isinstance(v, list):
        out = [decide_conditions(i, resolver) for i in v]
        return [i for i in out if i is not _DROP]
    if not isinstance(v, dict):
        return v
    if v == {"Ref": "AWS::NoValue"}:
        return _DROP
    if len(v) == 1 and "Fn::If" in v:
        cond, yes, no = v["Fn::If"]
        return decide_conditions(yes if resolver.condition(cond) else no, resolver)
    out = {}
    for k, item in v.items():
        r = decide_conditions(item, resolver)
        if r is not _DROP:
            out[k] = r
    return out


def stringify_number_env(template: dict) -> None:
    """Change 2 of the module comment, in place."""
    numbers = {n for n, p in (template.get("Parameters") or {}).items() if p.get("Type") == "Number"}
    for r in (template.get("Resources") or {}).values():
        if r.get("Type") != "AWS::Lambda::Function":
            continue
        env = ((r.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
        for k, val in env.items():
            if isinstance(val, dict) and val.get("Ref") in numbers:
                env[k] = {"Fn::Join": ["", [val]]}


def prepare(template: dict, region: str, params: dict[str, str]) -> dict:
    """The template moto should receive for a stack created with params."""
    resolver = Resolver(template, region, params=params)
    out = dict(template)
    out["Resources"] = decide_conditions(template.get("Resources") or {}, resolver)
    if "Outputs" in template:
        out["Outputs"] = decide_conditions(template["Outputs"], resolver)
    stringify_number_env(out)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in", dest="src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    params = {}
    for p in args.param:
        name, sep, value = p.partition("=")
        if not sep:
            ap.error(f"--param {p!r}: want NAME=VALUE")
        params[name] = value
    with open(args.src, encoding="utf-8") as f:
        template = json.load(f)
    try:
        out = prepare(template, args.region, params)
    except (KeyError, ValueError) as e:
        print(f"moto_template: {args.src}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
