"""Reading CloudFormation templates and resolving their intrinsic functions.

load() reads a YAML or JSON template with CloudFormation's short-form tags
(!Ref, !Sub, !GetAtt, !If, ...) turned into their long forms.

Resolver turns a template into what CloudFormation would evaluate for one
set of parameter values in one region: conditions decided, Fn::If branches
taken, AWS::NoValue removed, parameters and pseudo parameters substituted,
and references to resources replaced by the physical names and ARNs a
deployment in that region would give them (see Resolver.physical). The IAM
check evaluates the resolved policies; nothing here calls AWS.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import yaml

ACCOUNT = "123456789012"

# Regions the checks render the template for, and their partitions.
PARTITIONS = {"us-east-1": ("aws", "amazonaws.com"), "cn-north-1": ("aws-cn", "amazonaws.com.cn")}


def partition_of(region: str) -> tuple[str, str]:
    """The partition and URL suffix of any region (AWS China: aws-cn)."""
    if region in PARTITIONS:
        return PARTITIONS[region]
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


class CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short-form tags into their
    long forms."""


def _construct_tag(loader: CfnLoader, tag_suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {"Fn::" + tag_suffix: value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def load(path: str) -> dict:
    """Reads a template (YAML or JSON)."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a template")
    return doc


class _NoValue:
    """AWS::NoValue: removed from the dict or list that holds it."""


NO_VALUE = _NoValue()


class Resolver:
    """Evaluates a (translated) template for one region, stack name and set
    of parameter values (defaults for the rest)."""

    def __init__(self, template: dict, region: str, stack: str = "wxtoken", params: dict | None = None) -> None:
        self.t = template
        self.region = region
        self.partition, self.url_suffix = partition_of(region)
        self.stack = stack
        self.params: dict[str, Any] = {}
        for name, p in (template.get("Parameters") or {}).items():
            if "Default" in p:
                self.params[name] = p["Default"]
        self.params.update(params or {})
        for name, p in (template.get("Parameters") or {}).items():
            if p.get("Type") == "CommaDelimitedList" and isinstance(self.params.get(name), str):
                v = self.params[name]
                self.params[name] = v.split(",") if v else [""]
        self.pseudo = {
            "AWS::Region": region,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": self.url_suffix,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": stack,
            "AWS::StackId": f"arn:{self.partition}:cloudformation:{region}:{ACCOUNT}:stack/{stack}/0",
        }
        self._conditions: dict[str, bool] = {}

    # ---------------------------------------------------------- physical names

    def physical(self, logical: str) -> str:
        """What !Ref of a resource gives: a name (or ARN, for the types whose
        Ref is an ARN) a deployment would generate."""
        r = self.t["Resources"][logical]
        typ = r["Type"]
        props = r.get("Properties") or {}
        if typ == "AWS::Logs::LogGroup" and "LogGroupName" in props:
            return self.value(props["LogGroupName"])
        if typ == "AWS::IAM::ManagedPolicy":
            return f"arn:{self.partition}:iam::{ACCOUNT}:policy/{self.stack}-{logical}"
        if typ == "AWS::ApiGatewayV2::Api":
            return "a1b2c3d4e5"
        return f"{self.stack}-{logical}"

    def attribute(self, logical: str, attr: str) -> str:
        r = self.t["Resources"][logical]
        typ = r["Type"]
        name = self.physical(logical)
        p, reg = self.partition, self.region
        if attr == "Arn":
            arns = {
                "AWS::DynamoDB::Table": f"arn:{p}:dynamodb:{reg}:{ACCOUNT}:table/{name}",
                "AWS::Logs::LogGroup": f"arn:{p}:logs:{reg}:{ACCOUNT}:log-group:{name}:*",
                "AWS::IAM::Role": f"arn:{p}:iam::{ACCOUNT}:role/{name}",
                "AWS::Lambda::Function": f"arn:{p}:lambda:{reg}:{ACCOUNT}:function:{name}",
                "AWS::Events::Rule": f"arn:{p}:events:{reg}:{ACCOUNT}:rule/{name}",
            }
            if typ in arns:
                return arns[typ]
        raise ValueError(f"cannot resolve Fn::GetAtt {logical}.{attr} ({typ})")

    # ---------------------------------------------------------- conditions

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.value(self.t["Conditions"][name]))
        return self._conditions[name]

    # ---------------------------------------------------------- values

    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in (self.t.get("Resources") or {}):
            return self.physical(name)
        raise ValueError(f"cannot resolve Ref {name}")

    def _sub(self, text: str, local: dict) -> str:
        def one(m: re.Match) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(self.value(local[name]))
            if "." in name and name not in self.pseudo:
                res, _, attr = name.partition(".")
                return self.attribute(res, attr)
            v = self.ref(name)
            return ",".join(v) if isinstance(v, list) else str(v)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def value(self, v):
        """Resolves v; NO_VALUE for AWS::NoValue."""
        if isinstance(v, list):
            out = [self.value(i) for i in v]
            return [i for i in out if i is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (fn, arg), = v.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.value(yes if self.condition(cond) else no)
            if fn == "Fn::Equals":
                a, b = (self.value(x) for x in arg)
                return json.dumps(a) == json.dumps(b) or str(a) == str(b)
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn == "Fn::And":
                return all(self.value(x) for x in arg)
            if fn == "Fn::Or":
                return any(self.value(x) for x in arg)
            if fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return self._sub(text, local)
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.value(items))
            if fn == "Fn::GetAtt":
                res, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attribute(res, attr)
            if fn == "Fn::Select":
                i, items = arg
                return self.value(items)[int(self.value(i))]
            if fn == "Fn::Split":
                sep, s = arg
                return str(self.value(s)).split(sep)
        out = {}
        for k, item in v.items():
            r = self.value(item)
            if r is not NO_VALUE:
                out[k] = r
        return out

    def resources(self) -> dict:
        """The resources the stack creates (their Condition holds), resolved."""
        out = {}
        for name, r in (self.t.get("Resources") or {}).items():
            if "Condition" in r and not self.condition(r["Condition"]):
                continue
            r = copy.deepcopy(r)
            r.pop("Condition", None)
            out[name] = self.value(r)
        return out
