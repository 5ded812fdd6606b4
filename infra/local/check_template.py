#!/usr/bin/env python3
"""Checks invariants of wxtoken's SAM template that cfn-lint cannot see.

Usage (with the test bed's virtualenv, which has PyYAML):

    .cache/venv/bin/python infra/local/check_template.py [template.yaml] [--extra infra/*.yaml]
    .cache/venv/bin/python infra/local/check_template.py --self-test [template.yaml]

The first form checks the SAM template (default: template.yaml next to the
Makefile) and, in the --extra files, only that no ARN or host name is
hard-coded to the aws partition. It prints one line per invariant and exits
1 if any fails.

--self-test proves the checks can fail: it writes deliberately broken copies
of the template to a temporary directory, checks each, and exits 1 unless
every copy fails for the expected reason and the unbroken template passes.

The invariants (design.md §3-§6 and the template's contract with the Go code):
  - every function's Timeout < its WXTOKEN_LEASE_SECONDS; the API function's
    Timeout < 30 s (API Gateway's integration limit);
  - every function sets exactly the WXTOKEN_* variables that apply to it, and
    WXTOKEN_SERVICE is the stack name the alarms' Service dimension uses;
  - the functions keep the build contract (provided.al2023, arm64, bootstrap,
    BuildMethod makefile);
  - no string contains "arn:aws:" or "amazonaws.com" (the Lambda service
    principal lambda.amazonaws.com, the same in every partition, excepted);
  - the HTTP API has exactly the three routes, all IAM-authorized;
  - the consumer policy does not reach the force-refresh route, and does
    reach refresh and status;
  - ssm:PutParameter is granted only on .../access_token parameters;
  - function roles hold only the actions the functions call, KMS only via SSM,
    and no managed policy beyond the Lambda VPC access role;
  - every alarm's actions are guarded by the alarm-topic condition.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import tempfile

import yaml

# --------------------------------------------------------------- the contract

LEASE_VAR = "WXTOKEN_LEASE_SECONDS"
COMMON_ENV = {
    "WXTOKEN_TABLE",
    "WXTOKEN_PARAMETER_PREFIX",
    "WXTOKEN_KMS_KEY_ID",
    "WXTOKEN_LEASE_SECONDS",
    "WXTOKEN_SERVICE",
    "WXTOKEN_LOG_LEVEL",
}
SCHEDULED_ENV = COMMON_ENV | {"WXTOKEN_CONCURRENCY"}
API_TIMEOUT_LIMIT = 30  # seconds: API Gateway's integration timeout
ROUTES = {
    ("POST", "/v1/apps/{app}/refresh"),
    ("POST", "/v1/apps/{app}/force-refresh"),
    ("GET", "/v1/apps/{app}"),
}
# Actions each function may hold (lower case), beyond these shared ones.
SHARED_ACTIONS = {
    "logs:createlogstream",
    "logs:putlogevents",
    "ssm:getparameter",
    "ssm:putparameter",
    "kms:decrypt",
    "kms:encrypt",
}
SCHEDULED_ACTIONS = SHARED_ACTIONS | {"dynamodb:getitem", "dynamodb:updateitem", "dynamodb:scan"}
API_ACTIONS = SHARED_ACTIONS | {"dynamodb:getitem", "dynamodb:updateitem"}
ALLOWED_MANAGED_POLICIES = ("service-role/AWSLambdaVPCAccessExecutionRole",)
FORBIDDEN_LITERALS = ("arn:aws:", "amazonaws.com")
SERVICE_PRINCIPAL_OK = "lambda.amazonaws.com"
ALARM_TOPIC_PARAM = "AlarmTopicArn"

# Placeholders used to render Fn::Sub strings for matching ARNs.
PSEUDO = {
    "AWS::Partition": "PARTITION",
    "AWS::Region": "REGION",
    "AWS::AccountId": "ACCOUNT",
    "AWS::URLSuffix": "URLSUFFIX",
    "AWS::StackName": "STACK",
}


# --------------------------------------------------------------- loading


class CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short-form tags (!Ref, !Sub,
    !GetAtt, !If, ...) into their long forms."""


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
    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a template")
    return doc


# --------------------------------------------------------------- helpers


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed: list[str] = []

    def check(self, name: str, problems: list[str]) -> None:
        if problems:
            self.failures.extend(f"{name}: {p}" for p in problems)
        else:
            self.passed.append(name)


def walk_strings(node, path=()):
    """Yields (path, string) for every string, keys included."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str):
                yield path + (k,), k
            yield from walk_strings(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_strings(v, path + (i,))


def is_no_value(v) -> bool:
    return v == {"Ref": "AWS::NoValue"}


def branches(v) -> list:
    """The values v can take: both branches of an Fn::If (recursively),
    without AWS::NoValue."""
    if isinstance(v, dict) and set(v) == {"Fn::If"}:
        _, yes, no = v["Fn::If"]
        return branches(yes) + branches(no)
    if is_no_value(v):
        return []
    return [v]


def as_list(v) -> list:
    out = []
    for b in branches(v):
        if isinstance(b, list):
            for item in b:
                out.extend(branches(item))
        else:
            out.append(b)
    return out


class Renderer:
    """Renders intrinsic functions to the strings they can produce, with
    placeholders for pseudo parameters and resources and parameter defaults
    for parameters."""

    def __init__(self, template: dict) -> None:
        self.params = template.get("Parameters") or {}

    def ref(self, name: str) -> str:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return str(self.params[name].get("Default", f"<{name}>"))
        return name.upper()  # a resource: its logical ID in capitals

    def render(self, v) -> list[str]:
        if isinstance(v, (str, int, float)):
            return [str(v)]
        if isinstance(v, dict) and len(v) == 1:
            (fn, arg), = v.items()
            if fn == "Fn::If":
                return [s for b in branches(v) for s in self.render(b)]
            if fn == "Ref":
                return [] if arg == "AWS::NoValue" else [self.ref(arg)]
            if fn == "Fn::GetAtt":
                return [f"{arg[0]}.{arg[1]}".upper()]
            if fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

                def sub(m: re.Match) -> str:
                    name = m.group(1)
                    if name in local:
                        return (self.render(local[name]) or [""])[0]
                    if "." in name and name not in PSEUDO:
                        return name.upper()
                    return self.ref(name)

                return [re.sub(r"\$\{([^}!]+)\}", sub, text)]
            if fn == "Fn::Join":
                sep, items = arg
                parts = [(self.render(i) or [""])[0] for i in as_list(items)]
                return [sep.join(parts)]
        return [f"<unrendered {json.dumps(v, sort_keys=True)[:60]}>"]


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: * is any run of characters (slashes included),
    ? is one character."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.IGNORECASE if ignore_case else 0) is not None


def statements(policy_document) -> list[dict]:
    """The statements of a policy document, both branches of every Fn::If."""
    out = []
    for doc in branches(policy_document):
        if not isinstance(doc, dict):
            continue
        for st in as_list(doc.get("Statement", [])):
            if isinstance(st, dict):
                out.append(st)
    return out


def actions_of(st: dict) -> list[str]:
    return [a for a in as_list(st.get("Action", [])) if isinstance(a, str)]


def grants(st: dict, action: str) -> bool:
    return st.get("Effect") == "Allow" and any(glob_match(a, action, ignore_case=True) for a in actions_of(st))


# --------------------------------------------------------------- the template's parts


def functions(t: dict) -> dict[str, dict]:
    return {k: r for k, r in t.get("Resources", {}).items() if r.get("Type") == "AWS::Serverless::Function"}


def global_function(t: dict) -> dict:
    return ((t.get("Globals") or {}).get("Function")) or {}


def effective(t: dict, fn: dict, key: str):
    props = fn.get("Properties") or {}
    return props[key] if key in props else global_function(t).get(key)


def env_vars(t: dict, fn: dict) -> dict:
    merged = dict(((global_function(t).get("Environment") or {}).get("Variables")) or {})
    merged.update((((fn.get("Properties") or {}).get("Environment") or {}).get("Variables")) or {})
    return merged


def events(fn: dict) -> dict:
    return ((fn.get("Properties") or {}).get("Events")) or {}


def is_api_function(fn: dict) -> bool:
    return any(e.get("Type") == "HttpApi" for e in events(fn).values())


def is_scheduled_function(fn: dict) -> bool:
    return any(e.get("Type") in ("Schedule", "ScheduleV2") for e in events(fn).values())


def role_of(t: dict, fn: dict) -> tuple[str | None, dict | None]:
    role = (fn.get("Properties") or {}).get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        name = role["Fn::GetAtt"][0]
        return name, t.get("Resources", {}).get(name)
    return None, None


def all_policy_statements(t: dict) -> list[tuple[str, dict]]:
    """(where, statement) for every statement of every policy in the template."""
    out = []
    for name, r in t.get("Resources", {}).items():
        props = r.get("Properties") or {}
        typ = r.get("Type")
        if typ == "AWS::IAM::Role":
            for p in as_list(props.get("Policies", [])):
                out += [(name, st) for st in statements(p.get("PolicyDocument"))]
        elif typ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            out += [(name, st) for st in statements(props.get("PolicyDocument"))]
        elif typ == "AWS::Serverless::Function":
            for p in as_list(props.get("Policies", [])):
                if isinstance(p, dict) and "Statement" in p:
                    out += [(name, st) for st in statements(p)]
    return out


# --------------------------------------------------------------- the checks


def check_timeouts(t: dict) -> list[str]:
    problems = []
    fns = functions(t)
    if not fns:
        return ["no AWS::Serverless::Function in the template"]
    for name, fn in fns.items():
        timeout = effective(t, fn, "Timeout")
        lease = env_vars(t, fn).get(LEASE_VAR)
        if not isinstance(timeout, int):
            problems.append(f"{name}: Timeout must be a literal number of seconds, found {timeout!r}")
            continue
        if not (isinstance(lease, (str, int)) and str(lease).isdigit()):
            problems.append(f"{name}: {LEASE_VAR} must be a literal number of seconds, found {lease!r}")
            continue
        if timeout >= int(lease):
            problems.append(
                f"{name}: Timeout {timeout}s is not shorter than {LEASE_VAR}={lease}: "
                "a lease could outlive its holder"
            )
        if is_api_function(fn) and timeout >= API_TIMEOUT_LIMIT:
            problems.append(
                f"{name}: Timeout {timeout}s is not under API Gateway's {API_TIMEOUT_LIMIT}s integration limit"
            )
    return problems


def check_env(t: dict) -> list[str]:
    problems = []
    for name, fn in functions(t).items():
        got = {k for k in env_vars(t, fn) if k.startswith("WXTOKEN_")}
        if is_scheduled_function(fn) and is_api_function(fn):
            problems.append(f"{name}: is both the scheduled and the API function")
            continue
        want = SCHEDULED_ENV if is_scheduled_function(fn) else COMMON_ENV
        if missing := sorted(want - got):
            problems.append(f"{name}: missing environment variables {missing}")
        if extra := sorted(got - want):
            problems.append(f"{name}: environment variables that do not apply to it {extra}")
        service = env_vars(t, fn).get("WXTOKEN_SERVICE")
        if service is not None and service != {"Ref": "AWS::StackName"}:
            problems.append(f"{name}: WXTOKEN_SERVICE must be !Ref AWS::StackName (the alarms' Service), found {service!r}")
    return problems


def check_build_contract(t: dict) -> list[str]:
    problems = []
    for name, fn in functions(t).items():
        if effective(t, fn, "Runtime") != "provided.al2023":
            problems.append(f"{name}: Runtime must be provided.al2023")
        if effective(t, fn, "Architectures") != ["arm64"]:
            problems.append(f"{name}: Architectures must be [arm64]")
        if effective(t, fn, "Handler") != "bootstrap":
            problems.append(f"{name}: Handler must be bootstrap")
        if effective(t, fn, "CodeUri") != ".":
            problems.append(f"{name}: CodeUri must be . (the Makefile builds from the repository root)")
        if (fn.get("Metadata") or {}).get("BuildMethod") != "makefile":
            problems.append(f"{name}: Metadata.BuildMethod must be makefile (sam build == make build)")
    return problems


def check_partition_literals(t: dict, label: str = "") -> list[str]:
    problems = []
    for path, s in walk_strings(t):
        hits = [lit for lit in FORBIDDEN_LITERALS if lit in s]
        if not hits:
            continue
        where = ".".join(str(p) for p in path)
        if s == SERVICE_PRINCIPAL_OK and len(path) >= 3 and path[-1] == "Service" and path[-2] == "Principal" \
                and "AssumeRolePolicyDocument" in path:
            continue
        problems.append(f"{label}{where}: {s!r} hard-codes {' and '.join(hits)}; use ${{AWS::Partition}} / ${{AWS::URLSuffix}}")
    return problems


def check_routes(t: dict) -> list[str]:
    problems = []
    resources = t.get("Resources", {})
    apis = {k for k, r in resources.items() if r.get("Type") == "AWS::Serverless::HttpApi"}
    if len(apis) != 1:
        return [f"expected one AWS::Serverless::HttpApi, found {sorted(apis)}"]
    api_name = next(iter(apis))
    api_props = resources[api_name].get("Properties") or {}
    auth = api_props.get("Auth") or {}
    if auth.get("DefaultAuthorizer") != "AWS_IAM" or auth.get("EnableIamAuthorizer") is not True:
        problems.append(f"{api_name}: Auth must set EnableIamAuthorizer: true and DefaultAuthorizer: AWS_IAM")
    for key in ("DefinitionBody", "DefinitionUri"):
        if key in api_props:
            problems.append(f"{api_name}: {key} could add routes outside the functions' events; remove it")
    found = []
    for name, fn in functions(t).items():
        for ev_name, ev in events(fn).items():
            if ev.get("Type") != "HttpApi":
                continue
            p = ev.get("Properties") or {}
            found.append((str(p.get("Method", "")).upper(), p.get("Path")))
            if p.get("ApiId") != {"Ref": api_name}:
                problems.append(f"{name}.{ev_name}: ApiId must be !Ref {api_name} (else SAM adds an implicit API)")
            if (p.get("Auth") or {}).get("Authorizer") not in (None, "AWS_IAM"):
                problems.append(f"{name}.{ev_name}: overrides the IAM authorizer")
            if str(p.get("PayloadFormatVersion", "2.0")) != "2.0":
                problems.append(f"{name}.{ev_name}: PayloadFormatVersion must be 2.0")
    if sorted(found) != sorted(ROUTES) or len(found) != len(set(found)):
        problems.append(f"routes are {sorted(found)}, want exactly {sorted(ROUTES)}")
    return problems


def _api_arn(method: str, path: str) -> str:
    return f"arn:PARTITION:execute-api:REGION:ACCOUNT:API/$default/{method}{path}"


def check_consumer_policy(t: dict) -> list[str]:
    problems = []
    r = Renderer(t)
    policies = {k: v for k, v in t.get("Resources", {}).items() if v.get("Type") == "AWS::IAM::ManagedPolicy"}
    if not policies:
        return ["no AWS::IAM::ManagedPolicy (the consumer policy) in the template"]
    force = _api_arn("POST", "/v1/apps/shop/force-refresh")
    wanted = {
        "refresh": _api_arn("POST", "/v1/apps/shop/refresh"),
        "status": _api_arn("GET", "/v1/apps/shop"),
    }
    for name, pol in policies.items():
        reached = set()
        for st in statements((pol.get("Properties") or {}).get("PolicyDocument")):
            if "NotAction" in st or "NotResource" in st:
                problems.append(f"{name}: NotAction/NotResource cannot be checked; list what is granted")
                continue
            if grants(st, "ssm:PutParameter"):
                problems.append(f"{name}: consumers must not write parameters")
            if not grants(st, "execute-api:Invoke"):
                continue
            for res in as_list(st.get("Resource", [])):
                for arn in r.render(res):
                    if glob_match(arn, force):
                        problems.append(f"{name}: {arn} grants the operator-only force-refresh route")
                    reached |= {k for k, sample in wanted.items() if glob_match(arn, sample)}
        if missing := sorted(set(wanted) - reached):
            problems.append(f"{name}: does not grant the {' and '.join(missing)} route(s)")
    return problems


def check_put_parameter(t: dict) -> list[str]:
    problems = []
    r = Renderer(t)
    granted = False
    for where, st in all_policy_statements(t):
        if not grants(st, "ssm:PutParameter"):
            continue
        granted = True
        if "NotResource" in st:
            problems.append(f"{where}: ssm:PutParameter with NotResource")
        for res in as_list(st.get("Resource", [])):
            for arn in r.render(res):
                if not (arn.startswith("arn:PARTITION:ssm:REGION:ACCOUNT:parameter/") and arn.endswith("/access_token")):
                    problems.append(f"{where}: ssm:PutParameter on {arn}; only .../access_token parameters may be written")
    if not granted:
        problems.append("no function may publish tokens (ssm:PutParameter on .../access_token)")
    return problems


def check_function_roles(t: dict) -> list[str]:
    problems = []
    r = Renderer(t)
    for name, fn in functions(t).items():
        role_name, role = role_of(t, fn)
        if role is None:
            problems.append(f"{name}: Role must be !GetAtt <an AWS::IAM::Role in this template>.Arn")
            continue
        if (fn.get("Properties") or {}).get("Policies"):
            problems.append(f"{name}: Policies is ignored when Role is set; put statements in {role_name}")
        allowed = SCHEDULED_ACTIONS if is_scheduled_function(fn) else API_ACTIONS
        props = role.get("Properties") or {}
        for arn in (s for v in as_list(props.get("ManagedPolicyArns", [])) for s in r.render(v)):
            if not arn.endswith(ALLOWED_MANAGED_POLICIES):
                problems.append(f"{role_name}: managed policy {arn} is not allowed (least privilege)")
        for p in as_list(props.get("Policies", [])):
            for st in statements(p.get("PolicyDocument")):
                if st.get("Effect") != "Allow":
                    continue
                for a in actions_of(st):
                    if a.lower() not in allowed:
                        problems.append(f"{role_name}: {a} is more than {name} needs")
                if any(a.lower().startswith("kms:") for a in actions_of(st)):
                    via = ((st.get("Condition") or {}).get("StringEquals") or {}).get("kms:ViaService")
                    if via is None:
                        problems.append(f"{role_name}: KMS permissions without a kms:ViaService (SSM) condition")
    return problems


def _topic_conditions(t: dict) -> set[str]:
    """Conditions that hold exactly when the alarm topic parameter is set."""
    out = set()
    for name, cond in (t.get("Conditions") or {}).items():
        if isinstance(cond, dict) and set(cond) == {"Fn::Not"}:
            inner = cond["Fn::Not"][0]
            if isinstance(inner, dict) and set(inner) == {"Fn::Equals"}:
                a, b = inner["Fn::Equals"]
                if {json.dumps(a), json.dumps(b)} == {json.dumps({"Ref": ALARM_TOPIC_PARAM}), '""'}:
                    out.add(name)
    return out


def check_alarm_actions(t: dict) -> list[str]:
    problems = []
    guards = _topic_conditions(t)
    if not guards:
        return [f"no condition of the form !Not [!Equals [!Ref {ALARM_TOPIC_PARAM}, \"\"]]"]
    alarms = {k: v for k, v in t.get("Resources", {}).items()
              if v.get("Type") in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")}
    if not alarms:
        return ["no alarms in the template"]
    for name, alarm in alarms.items():
        props = alarm.get("Properties") or {}
        for key in ("AlarmActions", "OKActions", "InsufficientDataActions"):
            if key not in props:
                if key == "AlarmActions":
                    problems.append(f"{name}: no AlarmActions")
                continue
            v = props[key]
            ok = (isinstance(v, dict) and set(v) == {"Fn::If"} and v["Fn::If"][0] in guards
                  and v["Fn::If"][1] == [{"Ref": ALARM_TOPIC_PARAM}] and is_no_value(v["Fn::If"][2]))
            if not ok:
                problems.append(
                    f"{name}: {key} must be !If [<topic condition>, [!Ref {ALARM_TOPIC_PARAM}], !Ref AWS::NoValue]"
                )
        dims = as_list(props.get("Dimensions", []))
        if props.get("Namespace") == "wxtoken" and {"Name": "Service", "Value": {"Ref": "AWS::StackName"}} not in dims:
            problems.append(f"{name}: a wxtoken metric alarm must select Service = !Ref AWS::StackName (WXTOKEN_SERVICE)")
    return problems


CHECKS = [
    ("timeouts shorter than the lease (and API under 30 s)", check_timeouts),
    ("exact WXTOKEN_* environment per function", check_env),
    ("build contract (provided.al2023, arm64, bootstrap, makefile)", check_build_contract),
    ("no hard-coded aws partition", check_partition_literals),
    ("exactly the three IAM-authorized routes", check_routes),
    ("consumer policy: refresh and status, never force-refresh", check_consumer_policy),
    ("ssm:PutParameter only on .../access_token", check_put_parameter),
    ("function roles: only what the functions call", check_function_roles),
    ("alarm actions guarded by the topic condition", check_alarm_actions),
]


def run(template_path: str, extra: list[str]) -> Report:
    rep = Report()
    t = load(template_path)
    for name, fn in CHECKS:
        try:
            rep.check(name, fn(t))
        except Exception as e:  # a malformed template is a failure, not a crash
            rep.check(name, [f"could not check: {type(e).__name__}: {e}"])
    for path in extra:
        rep.check(f"no hard-coded aws partition in {path}", check_partition_literals(load(path), f"{path}: "))
    return rep


# --------------------------------------------------------------- self-test


def _first(t: dict, pred) -> tuple[str, dict]:
    for name, fn in functions(t).items():
        if pred(fn):
            return name, fn
    raise LookupError("no such function in the template")


def _scheduled(t):
    return _first(t, is_scheduled_function)[1]


def _api(t):
    return _first(t, is_api_function)[1]


def _role(t, fn):
    return role_of(t, fn)[1]


def _consumer_statement(t) -> dict:
    for r in t["Resources"].values():
        if r.get("Type") == "AWS::IAM::ManagedPolicy":
            for st in statements(r["Properties"]["PolicyDocument"]):
                if grants(st, "execute-api:Invoke"):
                    return st
    raise LookupError("no execute-api statement in a managed policy")


def _put_statement(t) -> dict:
    for st in statements(_role(t, _scheduled(t))["Properties"]["Policies"][0]["PolicyDocument"]):
        if grants(st, "ssm:PutParameter"):
            return st
    raise LookupError("no ssm:PutParameter statement")


def _first_alarm(t) -> dict:
    return next(r for r in t["Resources"].values() if r.get("Type") == "AWS::CloudWatch::Alarm")


def _add_resource(st: dict, resource) -> None:
    st["Resource"] = as_list(st.get("Resource", [])) + [resource]


MUTATIONS = [
    ("scheduled Timeout not shorter than the lease",
     lambda t: _scheduled(t)["Properties"].__setitem__("Timeout", 60), "outlive its holder"),
    ("API Timeout at API Gateway's limit",
     lambda t: _api(t)["Properties"].__setitem__("Timeout", 30), "integration limit"),
    ("WXTOKEN_SERVICE dropped",
     lambda t: t["Globals"]["Function"]["Environment"]["Variables"].pop("WXTOKEN_SERVICE"), "missing environment"),
    ("WXTOKEN_CONCURRENCY on the API function",
     lambda t: _api(t)["Properties"].setdefault("Environment", {"Variables": {}})["Variables"]
     .__setitem__("WXTOKEN_CONCURRENCY", "8"), "do not apply"),
    ("hard-coded arn:aws: ARN",
     lambda t: _put_statement(t).__setitem__("Resource", "arn:aws:ssm:us-east-1:123456789012:parameter/wechat/*/access_token"),
     "hard-codes arn:aws:"),
    ("hard-coded amazonaws.com host",
     lambda t: t["Outputs"]["ApiUrl"].__setitem__("Value", {"Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.amazonaws.com"}),
     "hard-codes amazonaws.com"),
    ("the service principal outside a trust policy",
     lambda t: t["Outputs"]["ApiUrl"].__setitem__("Description", "lambda.amazonaws.com"),
     "hard-codes amazonaws.com"),
    ("a fourth route",
     lambda t: _api(t)["Properties"]["Events"].__setitem__(
         "Delete", {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "Api"}, "Method": "DELETE", "Path": "/v1/apps/{app}"}}),
     "want exactly"),
    ("a route without IAM auth",
     lambda t: next(e for e in _api(t)["Properties"]["Events"].values() if e["Type"] == "HttpApi")["Properties"]
     .__setitem__("Auth", {"Authorizer": "NONE"}), "overrides the IAM authorizer"),
    ("consumer policy names force-refresh",
     lambda t: _add_resource(_consumer_statement(t), {
         "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*/POST/v1/apps/*/force-refresh"}),
     "force-refresh"),
    ("consumer policy wildcard covering force-refresh",
     lambda t: _consumer_statement(t).__setitem__("Resource", {
         "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*"}),
     "force-refresh"),
    ("consumer policy may write parameters",
     lambda t: _consumer_statement(t).__setitem__("Action", ["execute-api:Invoke", "ssm:PutParameter"]),
     "must not write"),
    ("ssm:PutParameter on the whole prefix",
     lambda t: _put_statement(t).__setitem__("Resource", {
         "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ParameterPrefix}/*"}),
     "only .../access_token"),
    ("DynamoDB PutItem on the API role",
     lambda t: _role(t, _api(t))["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
         {"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"}), "more than"),
    ("unconditional alarm actions",
     lambda t: _first_alarm(t)["Properties"].__setitem__("AlarmActions", [{"Ref": "AlarmTopicArn"}]),
     "must be !If"),
    ("alarm without actions",
     lambda t: _first_alarm(t)["Properties"].pop("AlarmActions"), "no AlarmActions"),
]


def self_test(template_path: str) -> int:
    base = load(template_path)
    ok = True
    baseline = run(template_path, [])
    if baseline.failures:
        print("self-test: the template itself fails, so the mutations prove nothing:")
        for f in baseline.failures:
            print(f"  {f}")
        return 1
    with tempfile.TemporaryDirectory(prefix="wxtoken-check-") as tmp:
        for i, (label, mutate, expect) in enumerate(MUTATIONS):
            t = copy.deepcopy(base)
            try:
                mutate(t)
            except (LookupError, KeyError, IndexError, TypeError) as e:
                print(f"self-test: cannot apply '{label}' to this template ({type(e).__name__}: {e})")
                ok = False
                continue
            path = os.path.join(tmp, f"broken-{i:02d}.json")  # JSON is YAML
            with open(path, "w", encoding="utf-8") as f:
                json.dump(t, f, indent=1)
            rep = run(path, [])
            if any(expect in msg for msg in rep.failures):
                print(f"self-test: caught   {label}")
            else:
                ok = False
                print(f"self-test: MISSED   {label} (wanted a failure mentioning {expect!r}; got {rep.failures or 'none'})")
    print("self-test: ok" if ok else "self-test: FAILED")
    return 0 if ok else 1


# --------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    default_template = os.path.normpath(os.path.join(here, "..", "..", "template.yaml"))
    args = list(argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    selftest = "--self-test" in args
    args = [a for a in args if a != "--self-test"]
    extra: list[str] = []
    if "--extra" in args:
        i = args.index("--extra")
        extra, args = args[i + 1:], args[:i]
    template_path = args[0] if args else default_template
    if selftest:
        return self_test(template_path)
    rep = run(template_path, extra)
    for name in rep.passed:
        print(f"ok    {name}")
    for f in rep.failures:
        print(f"FAIL  {f}")
    if rep.failures:
        print(f"{template_path}: {len(rep.failures)} invariant violation(s)")
        return 1
    print(f"{template_path}: all {len(rep.passed)} invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
