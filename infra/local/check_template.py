#!/usr/bin/env python3
"""Checks invariants of wxtoken's SAM template that cfn-lint cannot see.

Usage (with the test bed's virtualenv, which has PyYAML and the SAM
translator; translate first):

    .cache/venv/bin/python infra/local/sam/translate.py
    .cache/venv/bin/python infra/local/check_template.py [template.yaml]
        [--translated .cache/sam/translated.us-east-1.json]
        [--translated .cache/sam/translated.cn-north-1.json] [--extra infra/*.yaml]
    .cache/venv/bin/python infra/local/check_template.py --self-test [template.yaml]
        [--translated FILE]...

The first form checks the SAM template (default: template.yaml next to the
Makefile); each --translated file (repeatable), the same template after the
AWS::Serverless transform as infra/local/sam/translate.py writes it, i.e. what
CloudFormation receives; and, in the --extra files (one or more after the
option), only that no ARN or host name is hard-coded to the aws partition.
It prints one line per invariant (per translated file) and exits 1 if any
fails. Templates are read with infra/local/sam/cfn.py's load().

--self-test proves the checks can fail: it checks deliberately broken copies
of the template (written to a temporary directory) and of each --translated
file, and exits 1 unless the unbroken files pass and every copy fails for
the expected reason. Without --translated the translated-template checks
are not tested.

The invariants (design.md §3-§6 and the template's contract with the Go code):
  - every function's Timeout < its WXTOKEN_LEASE_SECONDS; the API function's
    Timeout < 30 s (API Gateway's integration limit);
  - every function sets exactly the WXTOKEN_* variables that apply to it, and
    WXTOKEN_SERVICE is the stack name the alarms' Service dimension uses;
  - the functions keep the build contract (provided.al2023, arm64, bootstrap,
    BuildMethod makefile);
  - no string contains "arn:aws:" or "amazonaws.com" (the Lambda service
    principal lambda.amazonaws.com, the same in every partition, excepted);
  - the HTTP API has exactly the four routes, all IAM-authorized;
  - the consumer policy does not reach the force-refresh route, and does
    reach refresh and status;
  - ssm:PutParameter is granted only on .../access_token and ticket parameters
    (and their _meta siblings);
  - function roles hold only the actions the functions call, KMS only via SSM,
    and no managed policy (not even the Lambda VPC access role, whose logs
    grant is on every log group);
  - every alarm's actions are guarded by the alarm-topic condition.

And in each translated template (where the generated resources exist):
  - it is a fresh translation of the source (parameters, conditions,
    outputs and the plain CloudFormation resources equal; same functions);
  - the AWS::Lambda::Function resources keep the build contract
    (provided.al2023, arm64, bootstrap, Code in S3), the exact WXTOKEN_*
    environment and the timeouts above;
  - the only AWS::Lambda::Permission resources are one per route for the API
    function (apigateway.amazonaws.com, SourceArn exactly
    arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*/METHOD/path,
    {app} as *, never broader (but for the refresh route's, which spans the
    ticket route: ROUTE_OVERLAPS), never missing, never another API's) and one
    for the scheduled function (events.amazonaws.com, SourceArn the rule's Arn);
  - the AWS::ApiGatewayV2::Api's OpenAPI body has exactly the four routes,
    each with security [{AWS_IAM: []}] (scheme awsSigv4) and an aws_proxy,
    payload 2.0 integration with the API function; no any-method, no
    $default route, no routes, integrations or stages outside the body;
  - the one stage is $default with AutoDeploy, default throttling from
    ApiThrottleRate/ApiThrottleBurst, force-refresh throttled to 1/1 under a
    route key the body has, and access logs to ApiAccessLogGroup;
  - the schedule rule (ScheduleRate, one target: the scheduled function) and
    the function's EventInvokeConfig never retry.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import tempfile

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
    ("POST", "/v1/apps/{app}/tickets/{ticket}/refresh"),
    ("POST", "/v1/apps/{app}/force-refresh"),
    ("GET", "/v1/apps/{app}"),
}
# Route ARNs that span another route: SAM writes the refresh route's
# SourceArn as .../POST/v1/apps/*/refresh, whose "*" spans
# .../POST/v1/apps/shop/tickets/jsapi/refresh; both routes are the API
# function's. Any other overlap is a permission broader than its route.
ROUTE_OVERLAPS = {
    (("POST", "/v1/apps/{app}/refresh"), ("POST", "/v1/apps/{app}/tickets/{ticket}/refresh")),
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
# What Lambda needs to attach a function to a VPC (granted only when HasVpc).
VPC_ACTIONS = {
    "ec2:createnetworkinterface",
    "ec2:describenetworkinterfaces",
    "ec2:describesubnets",
    "ec2:deletenetworkinterface",
    "ec2:assignprivateipaddresses",
    "ec2:unassignprivateipaddresses",
}
SHARED_ACTIONS |= VPC_ACTIONS
SCHEDULED_ACTIONS = SHARED_ACTIONS | {"dynamodb:getitem", "dynamodb:updateitem", "dynamodb:scan"}
API_ACTIONS = SHARED_ACTIONS | {"dynamodb:getitem", "dynamodb:updateitem"}
# None: AWSLambdaVPCAccessExecutionRole would grant logs on every group; the
# roles grant its network-interface actions inline (VPC_ACTIONS).
ALLOWED_MANAGED_POLICIES: tuple[str, ...] = ()
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

# One loader for every tool: infra/local/sam/cfn.py (also used by translate.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "sam"))
from cfn import load  # noqa: E402


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
        elif typ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
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
        "ticket refresh": _api_arn("POST", "/v1/apps/shop/tickets/jsapi/refresh"),
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


# The parameters the functions publish (pkg/registry: the token's and the
# tickets' leaves).
PUBLISHED_LEAVES = tuple(leaf + sfx for leaf in ("/access_token", "/jsapi_ticket", "/wx_card_ticket", "/agent_config_ticket")
                         for sfx in ("", "_meta"))


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
                if not (arn.startswith("arn:PARTITION:ssm:REGION:ACCOUNT:parameter/") and arn.endswith(PUBLISHED_LEAVES)):
                    problems.append(f"{where}: ssm:PutParameter on {arn}; only .../access_token and ticket parameters (and their _meta) may be written")
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



# Parameter values the design cannot run with (issue: refused at deploy).
STABLE_WINDOW_S = 270  # stable mode refreshes in the token's last 270 s
SLOW_RATES = ("rate(5 minutes)", "rate(10 minutes)", "rate(1 hour)", "cron(0/5 * * * ? *)")
GOOD_RATES = ("rate(1 minute)", "rate(4 minutes)")


def check_parameter_rules(t: dict) -> list[str]:
    """Parameters that would break the design are refused at deploy."""
    problems = []
    params = t.get("Parameters") or {}
    rate = params.get("ScheduleRate") or {}
    pattern = rate.get("AllowedPattern")
    if not pattern:
        problems.append("ScheduleRate: no AllowedPattern; a slower schedule can miss stable mode's window")
    else:
        for bad in SLOW_RATES:
            if re.fullmatch(pattern, bad):
                problems.append(f"ScheduleRate: AllowedPattern accepts {bad!r}, which can miss stable mode's {STABLE_WINDOW_S} s window")
        for good in GOOD_RATES:
            if not re.fullmatch(pattern, good):
                problems.append(f"ScheduleRate: AllowedPattern refuses {good!r}")
    near = params.get("NearExpirySeconds") or {}
    if not isinstance(near.get("MaxValue"), int) or near["MaxValue"] >= STABLE_WINDOW_S:
        problems.append(f"NearExpirySeconds: MaxValue must be under {STABLE_WINDOW_S} (found {near.get('MaxValue')!r}): "
                        "a higher value alarms on every stable rotation")
    rules = t.get("Rules") or {}
    vpc_rules = [r for r in rules.values()
                 if "SubnetIds" in json.dumps(r.get("RuleCondition")) and
                 any("SecurityGroupIds" in json.dumps(a.get("Assert")) for a in r.get("Assertions") or [])]
    if not vpc_rules:
        problems.append("no Rules entry refusing SubnetIds without SecurityGroupIds")
    return problems


def check_least_privilege_writes(t: dict) -> list[str]:
    """The functions' roles write only state# items (dynamodb:LeadingKeys)."""
    problems = []
    for name, fn in functions(t).items():
        role_name, role = role_of(t, fn)
        if role is None:
            continue
        for p in as_list((role.get("Properties") or {}).get("Policies", [])):
            for st in statements(p.get("PolicyDocument")):
                writes = [a for a in actions_of(st) if a.lower() in ("dynamodb:updateitem", "dynamodb:putitem", "dynamodb:deleteitem")]
                if st.get("Effect") != "Allow" or not writes:
                    continue
                cond = st.get("Condition") or {}
                keys = (cond.get("ForAllValues:StringLike") or cond.get("ForAllValues:StringEquals") or {}).get("dynamodb:LeadingKeys")
                if as_list(keys) != ["state#*"]:
                    problems.append(f"{role_name}: {', '.join(writes)} must be limited to state# items "
                                    f"(ForAllValues:StringLike dynamodb:LeadingKeys [state#*]), found {keys!r}")
                if str((cond.get("Null") or {}).get("dynamodb:LeadingKeys")).lower() != "false":
                    problems.append(f"{role_name}: {', '.join(writes)} needs Null dynamodb:LeadingKeys false "
                                    "(ForAllValues holds vacuously for a request without keys)")
    return problems


def check_schedule_alarm(t: dict) -> list[str]:
    """An alarm notices a stopped schedule (missing data is breaching), the
    scheduled function can reserve concurrency, and the access log never
    records the raw path."""
    problems = []
    alarms = [r.get("Properties") or {} for r in t.get("Resources", {}).values() if r.get("Type") == "AWS::CloudWatch::Alarm"]
    heart = [a for a in alarms if a.get("Namespace") == "wxtoken" and a.get("Statistic") == "SampleCount"
             and a.get("TreatMissingData") == "breaching" and a.get("ComparisonOperator") == "LessThanThreshold"
             and a.get("Threshold") == 1 and isinstance(a.get("Period"), int)
             and a["Period"] * int(a.get("EvaluationPeriods", 1)) <= 300]
    if not heart:
        problems.append("no alarm fires when no scheduled run completed for 5 minutes "
                        "(SampleCount < 1 of a per-run wxtoken metric, missing data breaching, at most 300 s)")
    _, sched = _first(t, is_scheduled_function)
    rc = (sched.get("Properties") or {}).get("ReservedConcurrentExecutions")
    if not (isinstance(rc, dict) and "Fn::If" in rc and rc["Fn::If"][1] == {"Ref": "ScheduledReservedConcurrency"}):
        problems.append("the scheduled function's ReservedConcurrentExecutions must come from ScheduledReservedConcurrency")
    for r in t.get("Resources", {}).values():
        fmt = ((r.get("Properties") or {}).get("AccessLogSettings") or {}).get("Format")
        if isinstance(fmt, str) and "$context.path" in fmt:
            problems.append("the API access log records $context.path: a token pasted into a URL would reach the log; use $context.routeKey")
    return problems

CHECKS = [
    ("timeouts shorter than the lease (and API under 30 s)", check_timeouts),
    ("exact WXTOKEN_* environment per function", check_env),
    ("build contract (provided.al2023, arm64, bootstrap, makefile)", check_build_contract),
    ("no hard-coded aws partition", check_partition_literals),
    ("exactly the four IAM-authorized routes", check_routes),
    ("consumer policy: refresh and status, never force-refresh", check_consumer_policy),
    ("ssm:PutParameter only on .../access_token", check_put_parameter),
    ("function roles: only what the functions call", check_function_roles),
    ("alarm actions guarded by the topic condition", check_alarm_actions),
    ("parameters that break the design are refused at deploy", check_parameter_rules),
    ("function roles write only state# items", check_least_privilege_writes),
    ("a stopped schedule alarms; no raw path in the access log", check_schedule_alarm),
]


# --------------------------------------------------------------- the translated template
#
# What CloudFormation receives after the AWS::Serverless transform
# (infra/local/sam/translate.py): the Lambda permissions, the OpenAPI body,
# the stage and the schedule exist only here, so their invariants are
# checked here. Functions and the API keep their logical IDs through the
# transform; the source template says which function is which.

EXECUTE_API_ARN = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${%s}/%s/%s%s"
INTEGRATION_URI = "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${%s.Arn}/invocations"
API_PRINCIPAL = "apigateway.amazonaws.com"
EVENTS_PRINCIPAL = "events.amazonaws.com"
IAM_SECURITY = [{"AWS_IAM": []}]
FORCE_ROUTE_KEY = "POST /v1/apps/{app}/force-refresh"
FORCE_LIMITS = {"ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 1}
DEFAULT_THROTTLE = {"ThrottlingRateLimit": {"Ref": "ApiThrottleRate"}, "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"}}
ACCESS_LOG_GROUP = "ApiAccessLogGroup"
# Resources that would add routes, integrations or stages outside the body.
ROUTE_TYPES_OUTSIDE_BODY = (
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::ApiGatewayV2::Deployment",
    "AWS::ApiGatewayV2::ApiMapping",
)


def route_key(method: str, path: str) -> str:
    return f"{method} {path}"


def route_source_arn(api: str, method: str, path: str, stage: str = "*") -> str:
    """The execute-api ARN of a route, with the path parameter as *."""
    return EXECUTE_API_ARN % (api, stage, method, re.sub(r"\{[^}]+\}", "*", path))


def symbolic(v) -> str:
    """Renders a string-valued intrinsic to Fn::Sub syntax: Ref X is ${X},
    GetAtt X.Y is ${X.Y}, an Fn::Sub's local variables substituted. Anything
    else raises ValueError (an unexpected form is a failure, not a guess)."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and len(v) == 1:
        (fn, arg), = v.items()
        if fn == "Ref" and isinstance(arg, str):
            return "${%s}" % arg
        if fn == "Fn::GetAtt":
            res, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return "${%s.%s}" % (res, attr)
        if fn == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            return re.sub(r"\$\{([^}!]+)\}",
                          lambda m: symbolic(local[m.group(1)]) if m.group(1) in local else m.group(0), text)
    raise ValueError(f"cannot render {json.dumps(v, sort_keys=True)[:80]}")


def of_type(t: dict, typ: str) -> dict[str, dict]:
    return {k: r for k, r in (t.get("Resources") or {}).items() if r.get("Type") == typ}


def props_of(r: dict) -> dict:
    return r.get("Properties") or {}


def source_names(src: dict) -> tuple[str, str, str]:
    """(API function, scheduled function, HTTP API) logical IDs, from the
    source template."""
    api_fns = [k for k, fn in functions(src).items() if is_api_function(fn)]
    sched_fns = [k for k, fn in functions(src).items() if is_scheduled_function(fn)]
    apis = list(of_type(src, "AWS::Serverless::HttpApi"))
    if len(api_fns) != 1 or len(sched_fns) != 1 or len(apis) != 1:
        raise LookupError(f"the source template must have one API function ({api_fns}), "
                          f"one scheduled function ({sched_fns}) and one HTTP API ({apis})")
    return api_fns[0], sched_fns[0], apis[0]


def check_t_fresh(src: dict, tt: dict) -> list[str]:
    stale = "differs from the source template: a stale translation (re-run infra/local/sam/translate.py)"
    problems = []
    for key in ("Parameters", "Conditions", "Outputs"):
        if src.get(key) != tt.get(key):
            problems.append(f"{key} {stale}")
    res = tt.get("Resources") or {}
    for name, r in (src.get("Resources") or {}).items():
        if not str(r.get("Type", "")).startswith("AWS::Serverless::") and res.get(name) != r:
            problems.append(f"{name} {stale}")
    want = sorted(functions(src))
    got = sorted(of_type(tt, "AWS::Lambda::Function"))
    if got != want:
        problems.append(f"Lambda functions are {got}, the source's functions are {want} ({stale.split(': ')[1]})")
    for name, fn in functions(src).items():
        tp = props_of(res.get(name) or {})
        for key in ("Timeout", "MemorySize", "Role", "Description", "LoggingConfig", "VpcConfig"):
            if tp.get(key) != effective(src, fn, key):
                problems.append(f"{name}.{key} {stale}")
        if ((tp.get("Environment") or {}).get("Variables") or {}) != env_vars(src, fn):
            problems.append(f"{name}.Environment {stale}")
    if "Transform" in tt or any(str(r.get("Type", "")).startswith("AWS::Serverless::") for r in res.values()):
        problems.append("not translated: still has the Transform or AWS::Serverless::* resources")
    return problems


def check_t_functions(src: dict, tt: dict) -> list[str]:
    api_fn, sched_fn, _ = source_names(src)
    problems = []
    fns = of_type(tt, "AWS::Lambda::Function")
    for want in (api_fn, sched_fn):
        if want not in fns:
            problems.append(f"{want}: no AWS::Lambda::Function of that name")
    for name, fn in fns.items():
        p = props_of(fn)
        if p.get("Runtime") != "provided.al2023":
            problems.append(f"{name}: Runtime must be provided.al2023, found {p.get('Runtime')!r}")
        if p.get("Architectures") != ["arm64"]:
            problems.append(f"{name}: Architectures must be [arm64], found {p.get('Architectures')!r}")
        if p.get("Handler") != "bootstrap":
            problems.append(f"{name}: Handler must be bootstrap, found {p.get('Handler')!r}")
        code = p.get("Code")
        if not (isinstance(code, dict) and set(code) <= {"S3Bucket", "S3Key", "S3ObjectVersion"}
                and code.get("S3Bucket") and code.get("S3Key")):
            problems.append(f"{name}: Code must be an S3Bucket/S3Key location (the packaged zip), found {code!r}")
        if p.get("PackageType", "Zip") != "Zip":
            problems.append(f"{name}: PackageType must be Zip")
        env = ((p.get("Environment") or {}).get("Variables")) or {}
        got = {k for k in env if k.startswith("WXTOKEN_")}
        if name == api_fn:
            want_env = COMMON_ENV
        elif name == sched_fn:
            want_env = SCHEDULED_ENV
        else:
            problems.append(f"{name}: neither the API nor the scheduled function of the source template")
            continue
        if missing := sorted(want_env - got):
            problems.append(f"{name}: missing environment variables {missing}")
        if extra := sorted(got - want_env):
            problems.append(f"{name}: environment variables that do not apply to it {extra}")
        if env.get("WXTOKEN_SERVICE", {"Ref": "AWS::StackName"}) != {"Ref": "AWS::StackName"}:
            problems.append(f"{name}: WXTOKEN_SERVICE must be Ref AWS::StackName, found {env.get('WXTOKEN_SERVICE')!r}")
        timeout, lease = p.get("Timeout"), env.get(LEASE_VAR)
        if not isinstance(timeout, int) or not str(lease).isdigit():
            problems.append(f"{name}: Timeout and {LEASE_VAR} must be literal seconds, found {timeout!r} and {lease!r}")
        else:
            if timeout >= int(lease):
                problems.append(f"{name}: Timeout {timeout}s is not shorter than {LEASE_VAR}={lease}: "
                                "a lease could outlive its holder")
            if name == api_fn and timeout >= API_TIMEOUT_LIMIT:
                problems.append(f"{name}: Timeout {timeout}s is not under API Gateway's {API_TIMEOUT_LIMIT}s integration limit")
    return problems


def _schedule_rule(tt: dict) -> tuple[str | None, list[str]]:
    rules = of_type(tt, "AWS::Events::Rule")
    if len(rules) != 1:
        return None, [f"expected one AWS::Events::Rule (the schedule), found {sorted(rules)}"]
    return next(iter(rules)), []


def check_t_permissions(src: dict, tt: dict) -> list[str]:
    api_fn, sched_fn, api = source_names(src)
    rule, problems = _schedule_rule(tt)
    wanted = {route_source_arn(api, m, p): (m, p) for m, p in ROUTES}
    samples = {(m, p): route_source_arn(api, m, p.replace("{app}", "shop").replace("{ticket}", "jsapi"), "$default") for m, p in ROUTES}
    count = {r: 0 for r in ROUTES}
    for name, perm in of_type(tt, "AWS::Lambda::Permission").items():
        p = props_of(perm)
        fn = p.get("FunctionName")
        if p.get("Action") != "lambda:InvokeFunction":
            problems.append(f"{name}: Action must be lambda:InvokeFunction, found {p.get('Action')!r}")
        if "SourceAccount" in p or "EventSourceToken" in p or "PrincipalOrgID" in p or "FunctionUrlAuthType" in p:
            problems.append(f"{name}: unexpected SourceAccount/EventSourceToken/PrincipalOrgID/FunctionUrlAuthType")
        if fn == {"Ref": api_fn}:
            if p.get("Principal") != API_PRINCIPAL:
                problems.append(f"{name}: Principal must be {API_PRINCIPAL}, found {p.get('Principal')!r}")
            if "SourceArn" not in p:
                problems.append(f"{name}: no SourceArn: any API Gateway API, in any account, could invoke {api_fn}")
                continue
            try:
                arn = symbolic(p["SourceArn"])
            except ValueError as e:
                problems.append(f"{name}: SourceArn: {e}")
                continue
            covered = sorted(r for r, sample in samples.items() if glob_match(arn, sample))
            route = wanted.get(arn)
            # A route's own ARN may span another route only where the
            # template's paths force it (ROUTE_OVERLAPS).
            extra = [c for c in covered if c != route and (route, c) not in ROUTE_OVERLAPS]
            if route is not None and not extra:
                count[route] += 1
            elif len(covered) > 1:
                problems.append(f"{name}: SourceArn {arn} is broader than one route (covers {covered})")
            else:
                problems.append(f"{name}: SourceArn {arn} is not the ARN of one of the routes of {api} "
                                f"(want one of {sorted(wanted)})")
        elif fn == {"Ref": sched_fn}:
            if p.get("Principal") != EVENTS_PRINCIPAL:
                problems.append(f"{name}: Principal must be {EVENTS_PRINCIPAL}, found {p.get('Principal')!r}")
            if rule is None or p.get("SourceArn") != {"Fn::GetAtt": [rule, "Arn"]}:
                problems.append(f"{name}: SourceArn must be !GetAtt {rule}.Arn (the schedule rule), "
                                f"found {p.get('SourceArn')!r}")
        else:
            problems.append(f"{name}: a permission on {fn!r} is not expected (only the API's routes and the schedule)")
    for r, n in sorted(count.items()):
        if n != 1:
            problems.append(f"{n} permissions for route {route_key(*r)}, want exactly one")
    return problems


def _body_operations(body: dict) -> tuple[dict[tuple[str, str], dict], list[str]]:
    ops, problems = {}, []
    for path, item in (body.get("paths") or {}).items():
        if "$default" in path:
            problems.append(f"path {path!r}: a $default route catches every request")
        if not isinstance(item, dict):
            problems.append(f"path {path!r}: not an object")
            continue
        for method, op in item.items():
            if method == "x-amazon-apigateway-any-method":
                problems.append(f"path {path!r}: x-amazon-apigateway-any-method routes every method")
            elif method.startswith("x-") or method == "parameters":
                problems.append(f"path {path!r}: unexpected {method}")
            ops[(method.upper(), path)] = op if isinstance(op, dict) else {}
    return ops, problems


def check_t_api_body(src: dict, tt: dict) -> list[str]:
    api_fn, _, api = source_names(src)
    problems = []
    apis = of_type(tt, "AWS::ApiGatewayV2::Api")
    if sorted(apis) != [api]:
        return [f"expected one AWS::ApiGatewayV2::Api, {api}; found {sorted(apis)}"]
    for typ in ROUTE_TYPES_OUTSIDE_BODY:
        for name in of_type(tt, typ):
            problems.append(f"{name}: {typ} adds to the API outside the body")
    p = props_of(apis[api])
    for key in ("BodyS3Location", "Target", "RouteKey", "CredentialsArn", "RouteSelectionExpression"):
        if key in p:
            problems.append(f"{api}: {key} defines routes or integrations outside the body")
    body = p.get("Body")
    if not isinstance(body, dict):
        return problems + [f"{api}: no inline OpenAPI Body"]
    ops, more = _body_operations(body)
    problems += more
    if sorted(ops) != sorted(ROUTES):
        problems.append(f"paths are {sorted(ops)}, want exactly {sorted(ROUTES)}")
    if "security" in body:
        problems.append("a body-level security default: say it on every operation instead")
    scheme = (((body.get("components") or {}).get("securitySchemes")) or {}).get("AWS_IAM")
    if not isinstance(scheme, dict) or scheme.get("x-amazon-apigateway-authtype") != "awsSigv4":
        problems.append(f"security scheme AWS_IAM must have x-amazon-apigateway-authtype: awsSigv4, found {scheme!r}")
    uri_want = INTEGRATION_URI % api_fn
    for (method, path), op in sorted(ops.items()):
        where = route_key(method, path)
        if op.get("security") != IAM_SECURITY:
            problems.append(f"{where}: security must be {IAM_SECURITY}, found {op.get('security')!r}")
        integ = op.get("x-amazon-apigateway-integration") or {}
        if integ.get("type") != "aws_proxy":
            problems.append(f"{where}: integration type must be aws_proxy, found {integ.get('type')!r}")
        if str(integ.get("payloadFormatVersion")) != "2.0":
            problems.append(f"{where}: payloadFormatVersion must be 2.0, found {integ.get('payloadFormatVersion')!r}")
        try:
            uri = symbolic(integ.get("uri"))
        except ValueError as e:
            uri = str(e)
        if uri != uri_want:
            problems.append(f"{where}: integration uri is {uri}, want {uri_want}")
    return problems


def check_t_stage(src: dict, tt: dict) -> list[str]:
    _, _, api = source_names(src)
    problems = []
    stages = of_type(tt, "AWS::ApiGatewayV2::Stage")
    if len(stages) != 1:
        return [f"expected one AWS::ApiGatewayV2::Stage ($default), found {sorted(stages)}: "
                "another stage would serve the routes with other settings"]
    name, stage = next(iter(stages.items()))
    p = props_of(stage)
    if p.get("ApiId") != {"Ref": api}:
        problems.append(f"{name}: ApiId must be Ref {api}")
    if p.get("StageName") != "$default" or p.get("AutoDeploy") is not True:
        problems.append(f"{name}: must be StageName $default with AutoDeploy true, found "
                        f"{p.get('StageName')!r} / AutoDeploy {p.get('AutoDeploy')!r}")
    default = p.get("DefaultRouteSettings") or {}
    for key, want in DEFAULT_THROTTLE.items():
        if default.get(key) != want:
            problems.append(f"{name}: DefaultRouteSettings.{key} must be Ref {want['Ref']}, found {default.get(key)!r}")
    body = props_of(of_type(tt, "AWS::ApiGatewayV2::Api").get(api) or {}).get("Body") or {}
    keys = {route_key(m, pth) for m, pth in _body_operations(body)[0]}
    settings = p.get("RouteSettings") or {}
    for key in settings:
        if key not in keys:
            problems.append(f"{name}: RouteSettings key {key!r} is not a route key of the body {sorted(keys)}")
    force = settings.get(FORCE_ROUTE_KEY)
    if not isinstance(force, dict) or any(force.get(k) != v for k, v in FORCE_LIMITS.items()):
        problems.append(f"{name}: RouteSettings[{FORCE_ROUTE_KEY!r}] must throttle force-refresh to {FORCE_LIMITS}, found {force!r}")
    logs = p.get("AccessLogSettings") or {}
    try:
        dest = symbolic(logs.get("DestinationArn"))
    except ValueError as e:
        dest = str(e)
    dest_ok = ("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${%s}" % ACCESS_LOG_GROUP,
               "${%s.Arn}" % ACCESS_LOG_GROUP)
    if dest not in dest_ok or ACCESS_LOG_GROUP not in of_type(tt, "AWS::Logs::LogGroup") or not logs.get("Format"):
        problems.append(f"{name}: AccessLogSettings must log (a Format) to the {ACCESS_LOG_GROUP} log group, "
                        f"found DestinationArn {dest}")
    return problems


def check_t_schedule(src: dict, tt: dict) -> list[str]:
    _, sched_fn, _ = source_names(src)
    rule, problems = _schedule_rule(tt)
    configs = {k: r for k, r in of_type(tt, "AWS::Lambda::EventInvokeConfig").items()
               if props_of(r).get("FunctionName") == {"Ref": sched_fn}}
    if len(configs) != 1:
        problems.append(f"{sched_fn}: expected one AWS::Lambda::EventInvokeConfig, found {sorted(configs)}")
    for name, cfg in configs.items():
        p = props_of(cfg)
        if p.get("MaximumRetryAttempts") != 0:
            problems.append(f"{name}: MaximumRetryAttempts must be 0 (a retry would overlap the next run), "
                            f"found {p.get('MaximumRetryAttempts')!r}")
        if p.get("Qualifier") != "$LATEST":
            problems.append(f"{name}: Qualifier must be $LATEST (what the rule invokes), found {p.get('Qualifier')!r}")
    if rule is None:
        return problems
    p = props_of(of_type(tt, "AWS::Events::Rule")[rule])
    if p.get("ScheduleExpression") != {"Ref": "ScheduleRate"}:
        problems.append(f"{rule}: ScheduleExpression must be Ref ScheduleRate, found {p.get('ScheduleExpression')!r}")
    if p.get("State", "ENABLED") != "ENABLED":
        problems.append(f"{rule}: State must be ENABLED, found {p.get('State')!r}")
    if "EventPattern" in p:
        problems.append(f"{rule}: an EventPattern would invoke the function on events besides the schedule")
    targets = p.get("Targets") or []
    if len(targets) != 1:
        return problems + [f"{rule}: expected exactly one target, found {len(targets)}"]
    target = targets[0]
    if target.get("Arn") != {"Fn::GetAtt": [sched_fn, "Arn"]}:
        problems.append(f"{rule}: the target must be !GetAtt {sched_fn}.Arn, found {target.get('Arn')!r}")
    if (target.get("RetryPolicy") or {}).get("MaximumRetryAttempts") != 0:
        problems.append(f"{rule}: the target's RetryPolicy.MaximumRetryAttempts must be 0, found {target.get('RetryPolicy')!r}")
    return problems


TRANSLATED_CHECKS = [
    ("translated: a fresh translation of this template", check_t_fresh),
    ("translated: functions keep the build contract, environment and timeouts", check_t_functions),
    ("translated: Lambda permissions, one per route and the schedule", check_t_permissions),
    ("translated: OpenAPI body has exactly the four IAM-authorized routes", check_t_api_body),
    ("translated: $default stage throttling and access log", check_t_stage),
    ("translated: schedule and its invoke config never retry", check_t_schedule),
]


def run_translated(rep: Report, src: dict, path: str, tt: dict | None = None) -> None:
    """The TRANSLATED_CHECKS on one translated template (read from path
    unless given), each reported with the file's name."""
    label = os.path.basename(path)
    if tt is None:
        try:
            tt = load(path)
        except (OSError, ValueError) as e:
            rep.check(f"translated: {label}", [f"cannot read {path} ({type(e).__name__}: {e}); "
                                                "run infra/local/sam/translate.py first"])
            return
    for name, fn in TRANSLATED_CHECKS:
        try:
            rep.check(f"{name} [{label}]", fn(src, tt))
        except Exception as e:  # a malformed template is a failure, not a crash
            rep.check(f"{name} [{label}]", [f"could not check: {type(e).__name__}: {e}"])


def run(template_path: str, extra: list[str], translated: list[str] = ()) -> Report:
    rep = Report()
    t = load(template_path)
    for name, fn in CHECKS:
        try:
            rep.check(name, fn(t))
        except Exception as e:  # a malformed template is a failure, not a crash
            rep.check(name, [f"could not check: {type(e).__name__}: {e}"])
    for path in extra:
        rep.check(f"no hard-coded aws partition in {path}", check_partition_literals(load(path), f"{path}: "))
    for path in translated:
        run_translated(rep, t, path)
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
    ("a managed policy on a function role",
     lambda t: _role(t, _api(t))["Properties"].__setitem__("ManagedPolicyArns", [{
         "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"}]),
     "is not allowed"),
    ("ScheduleRate accepts rate(5 minutes)",
     lambda t: t["Parameters"]["ScheduleRate"].__setitem__("AllowedPattern", "^rate\\(.+\\)$"), "can miss stable mode"),
    ("NearExpirySeconds up to 270",
     lambda t: t["Parameters"]["NearExpirySeconds"].__setitem__("MaxValue", 270), "MaxValue must be under"),
    ("no VPC rule",
     lambda t: t.pop("Rules"), "SubnetIds without SecurityGroupIds"),
    ("UpdateItem on every item",
     lambda t: next(st for st in _role(t, _api(t))["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
                    if isinstance(st, dict) and st.get("Sid") == "WriteStateOnly").pop("Condition"), "limited to state# items"),
    ("heartbeat alarm treating missing data as fine",
     lambda t: next(r for r in t["Resources"].values() if (r.get("Properties") or {}).get("Statistic") == "SampleCount")
     ["Properties"].__setitem__("TreatMissingData", "notBreaching"), "no alarm fires when no scheduled run"),
    ("raw path in the access log",
     lambda t: t["Resources"]["Api"]["Properties"]["AccessLogSettings"].__setitem__(
         "Format", t["Resources"]["Api"]["Properties"]["AccessLogSettings"]["Format"] + "$context.path"), "$context.path"),
    ("DynamoDB PutItem on the API role",
     lambda t: _role(t, _api(t))["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
         {"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"}), "more than"),
    ("unconditional alarm actions",
     lambda t: _first_alarm(t)["Properties"].__setitem__("AlarmActions", [{"Ref": "AlarmTopicArn"}]),
     "must be !If"),
    ("alarm without actions",
     lambda t: _first_alarm(t)["Properties"].pop("AlarmActions"), "no AlarmActions"),
]


# Broken copies of a translated template. The finders look resources up by
# what they are, not by the names SAM happens to give them.


def _t_res(tt, typ, pred=lambda p: True) -> dict:
    for r in tt["Resources"].values():
        if r.get("Type") == typ and pred(r.get("Properties") or {}):
            return r
    raise LookupError(f"no {typ} in the translated template")


def _t_perm(tt, suffix: str) -> dict:
    """The API permission whose SourceArn ends with suffix (props)."""
    return _t_res(tt, "AWS::Lambda::Permission",
                  lambda p: p.get("Principal") == API_PRINCIPAL and symbolic(p.get("SourceArn", "")).endswith(suffix))["Properties"]


def _t_sched_perm(tt) -> dict:
    return _t_res(tt, "AWS::Lambda::Permission", lambda p: p.get("Principal") == EVENTS_PRINCIPAL)["Properties"]


def _t_body(tt) -> dict:
    return _t_res(tt, "AWS::ApiGatewayV2::Api")["Properties"]["Body"]


def _t_op(tt, method: str, path: str) -> dict:
    return _t_body(tt)["paths"][path][method.lower()]


def _t_stage(tt) -> dict:
    return _t_res(tt, "AWS::ApiGatewayV2::Stage")["Properties"]


def _t_rule(tt) -> dict:
    return _t_res(tt, "AWS::Events::Rule")["Properties"]


def _t_fn(tt, scheduled: bool) -> tuple[str, dict]:
    for name, r in tt["Resources"].items():
        if r.get("Type") == "AWS::Lambda::Function":
            env = r["Properties"]["Environment"]["Variables"]
            if ("WXTOKEN_CONCURRENCY" in env) == scheduled:
                return name, r["Properties"]
    raise LookupError("no such AWS::Lambda::Function")


def _t_sub(props: dict, key: str, text: str) -> None:
    """Replaces the text of the Fn::Sub [text, vars] at props[key]."""
    props[key]["Fn::Sub"][0] = text


def _t_add(tt, name: str, resource: dict) -> None:
    tt["Resources"][name] = resource


_EXEC = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}"

def _t_drop_perm(tt, suffix: str) -> None:
    """Removes the API permission whose SourceArn ends with suffix."""
    props = _t_perm(tt, suffix)
    name = next(k for k, r in tt["Resources"].items() if r.get("Properties") is props)
    del tt["Resources"][name]


TRANSLATED_MUTATIONS = [
    ("ticket route without its permission",
     lambda t: _t_drop_perm(t, "/tickets/*/refresh"), "0 permissions for route POST /v1/apps/{app}/tickets/{ticket}/refresh"),
    ("ticket route permission spanning the token route",
     lambda t: _t_sub(_t_perm(t, "/tickets/*/refresh"), "SourceArn", _EXEC + "/${__Stage__}/POST/v1/apps/*"), "broader than one route"),
    ("permission SourceArn widened to ${__ApiId__}/*",
     lambda t: _t_sub(_t_perm(t, "/refresh"), "SourceArn", _EXEC + "/*"), "broader than one route"),
    ("permission SourceArn widened to every POST",
     lambda t: _t_sub(_t_perm(t, "/refresh"), "SourceArn", _EXEC + "/${__Stage__}/POST/*"), "broader than one route"),
    ("permission without SourceArn",
     lambda t: _t_perm(t, "/force-refresh").pop("SourceArn"), "no SourceArn"),
    ("permission for another API",
     lambda t: _t_perm(t, "GET/v1/apps/*")["SourceArn"]["Fn::Sub"][1].__setitem__("__ApiId__", {"Ref": "OtherApi"}),
     "is not the ARN of one of the routes"),
    ("two permissions for the status route",
     lambda t: _t_add(t, "ExtraPermission", {"Type": "AWS::Lambda::Permission",
                                             "Properties": copy.deepcopy(_t_perm(t, "GET/v1/apps/*"))}),
     "2 permissions for route GET"),
    ("API permission for any principal",
     lambda t: _t_perm(t, "/refresh").__setitem__("Principal", "*"), "Principal must be apigateway"),
    ("schedule permission without SourceArn",
     lambda t: _t_sched_perm(t).pop("SourceArn"), "SourceArn must be !GetAtt"),
    ("a permission for a third party",
     lambda t: _t_add(t, "S3Permission", {"Type": "AWS::Lambda::Permission", "Properties": {
         "Action": "lambda:InvokeFunction", "FunctionName": {"Fn::GetAtt": [_t_fn(t, True)[0], "Arn"]},
         "Principal": "s3.amazonaws.com"}}), "is not expected"),
    ("a route's security removed",
     lambda t: _t_op(t, "POST", "/v1/apps/{app}/refresh").pop("security"), "security must be"),
    ("a route's security emptied",
     lambda t: _t_op(t, "GET", "/v1/apps/{app}").__setitem__("security", []), "security must be"),
    ("security scheme changed to NONE",
     lambda t: _t_body(t)["components"]["securitySchemes"]["AWS_IAM"].__setitem__("x-amazon-apigateway-authtype", "NONE"),
     "awsSigv4"),
    ("a fourth path in the body",
     lambda t: _t_body(t)["paths"].__setitem__("/v1/apps/{app}/delete", {
         "post": copy.deepcopy(_t_op(t, "POST", "/v1/apps/{app}/refresh"))}), "paths are"),
    ("x-amazon-apigateway-any-method on a path",
     lambda t: _t_body(t)["paths"]["/v1/apps/{app}"].__setitem__(
         "x-amazon-apigateway-any-method", copy.deepcopy(_t_op(t, "GET", "/v1/apps/{app}"))), "any-method"),
    ("a $default route",
     lambda t: _t_body(t)["paths"].__setitem__("$default", {
         "x-amazon-apigateway-any-method": copy.deepcopy(_t_op(t, "GET", "/v1/apps/{app}"))}), "$default route"),
    ("integration with the scheduled function",
     lambda t: _t_op(t, "GET", "/v1/apps/{app}")["x-amazon-apigateway-integration"].__setitem__(
         "uri", {"Fn::Sub": INTEGRATION_URI % _t_fn(t, True)[0]}), "integration uri"),
    ("payload format 1.0",
     lambda t: _t_op(t, "POST", "/v1/apps/{app}/refresh")["x-amazon-apigateway-integration"].__setitem__(
         "payloadFormatVersion", "1.0"), "payloadFormatVersion"),
    ("a Route resource outside the body",
     lambda t: _t_add(t, "CatchAll", {"Type": "AWS::ApiGatewayV2::Route", "Properties": {
         "ApiId": {"Ref": "Api"}, "RouteKey": "$default"}}), "outside the body"),
    ("force-refresh RouteSettings key misspelled",
     lambda t: _t_stage(t)["RouteSettings"].__setitem__(
         "POST /v1/apps/{appid}/force-refresh", _t_stage(t)["RouteSettings"].pop(FORCE_ROUTE_KEY)),
     "is not a route key"),
    ("force-refresh rate limit raised",
     lambda t: _t_stage(t)["RouteSettings"][FORCE_ROUTE_KEY].__setitem__("ThrottlingRateLimit", 10),
     "must throttle force-refresh"),
    ("force-refresh burst limit raised",
     lambda t: _t_stage(t)["RouteSettings"][FORCE_ROUTE_KEY].__setitem__("ThrottlingBurstLimit", 5),
     "must throttle force-refresh"),
    ("default throttling hard-coded",
     lambda t: _t_stage(t)["DefaultRouteSettings"].__setitem__("ThrottlingRateLimit", 50),
     "must be Ref ApiThrottleRate"),
    ("stage without AutoDeploy",
     lambda t: _t_stage(t).__setitem__("AutoDeploy", False), "AutoDeploy true"),
    ("a second, unthrottled stage",
     lambda t: _t_add(t, "ProdStage", {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {
         "ApiId": {"Ref": "Api"}, "StageName": "prod", "AutoDeploy": True}}), "another stage"),
    ("access log to another log group",
     lambda t: _t_stage(t)["AccessLogSettings"].__setitem__(
         "DestinationArn", {"Fn::GetAtt": [_t_fn(t, False)[1]["LoggingConfig"]["LogGroup"]["Ref"], "Arn"]}),
     "AccessLogSettings"),
    ("EventInvokeConfig retries 2",
     lambda t: _t_res(t, "AWS::Lambda::EventInvokeConfig")["Properties"].__setitem__("MaximumRetryAttempts", 2),
     "MaximumRetryAttempts must be 0"),
    ("schedule target retries 2",
     lambda t: _t_rule(t)["Targets"][0]["RetryPolicy"].__setitem__("MaximumRetryAttempts", 2),
     "RetryPolicy.MaximumRetryAttempts must be 0"),
    ("schedule rate hard-coded",
     lambda t: _t_rule(t).__setitem__("ScheduleExpression", "rate(5 minutes)"), "Ref ScheduleRate"),
    ("schedule targets the API function",
     lambda t: _t_rule(t)["Targets"][0].__setitem__("Arn", {"Fn::GetAtt": [_t_fn(t, False)[0], "Arn"]}),
     "the target must be"),
    ("translated Runtime changed",
     lambda t: _t_fn(t, False)[1].__setitem__("Runtime", "provided.al2"), "Runtime must be"),
    ("translated Code inline",
     lambda t: _t_fn(t, True)[1].__setitem__("Code", {"ZipFile": "exit 0"}), "S3Bucket/S3Key"),
    ("translated WXTOKEN_CONCURRENCY dropped",
     lambda t: _t_fn(t, True)[1]["Environment"]["Variables"].pop("WXTOKEN_CONCURRENCY"), "missing environment"),
    ("translated API Timeout at the limit",
     lambda t: _t_fn(t, False)[1].__setitem__("Timeout", 30), "integration limit"),
    ("a stale translation",
     lambda t: _t_res(t, "AWS::IAM::ManagedPolicy")["Properties"].__setitem__("Description", "old"),
     "stale translation"),
    ("a stale translation of a function",
     lambda t: _t_fn(t, True)[1].__setitem__("Timeout", 40), "Timeout differs from the source template"),
]


def _expect(rep: Report, label: str, expect: str) -> bool:
    if any(expect in msg for msg in rep.failures):
        print(f"self-test: caught   {label}")
        return True
    print(f"self-test: MISSED   {label} (wanted a failure mentioning {expect!r}; got {rep.failures or 'none'})")
    return False


def self_test(template_path: str, translated: list[str] = ()) -> int:
    base = load(template_path)
    ok = True
    baseline = run(template_path, [], translated)
    if baseline.failures:
        print("self-test: the templates themselves fail, so the mutations prove nothing:")
        for f in baseline.failures:
            print(f"  {f}")
        return 1
    print(f"self-test: {template_path} and {len(translated)} translated file(s) pass unbroken")
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
            ok &= _expect(run(path, []), label, expect)
        # The translated files (read above by the same loader): each broken
        # copy, round-tripped through JSON as a file would be, is checked in
        # memory against the unbroken source, under its file's name.
        for tpath in translated:
            tbase = load(tpath)
            name = os.path.basename(tpath)
            for label, mutate, expect in TRANSLATED_MUTATIONS:
                tt = copy.deepcopy(tbase)
                try:
                    mutate(tt)
                except (LookupError, KeyError, IndexError, TypeError, ValueError) as e:
                    print(f"self-test: cannot apply '{label}' to {tpath} ({type(e).__name__}: {e})")
                    ok = False
                    continue
                rep = Report()
                run_translated(rep, base, tpath, json.loads(json.dumps(tt)))
                ok &= _expect(rep, f"[{name}] {label}", expect)
    if not translated:
        print("self-test: no --translated file given; the translated-template checks were not tested")
    print("self-test: ok" if ok else "self-test: FAILED")
    return 0 if ok else 1


# --------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    default_template = os.path.normpath(os.path.join(here, "..", "..", "template.yaml"))
    ap = argparse.ArgumentParser(
        usage="%(prog)s [--self-test] [template.yaml] [--translated FILE]... [--extra FILE...]",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("template", nargs="?", default=default_template)
    ap.add_argument("--self-test", action="store_true", help="prove every check can fail")
    ap.add_argument("--translated", action="append", default=[], metavar="FILE",
                    help="a template translated by infra/local/sam/translate.py (repeatable)")
    ap.add_argument("--extra", action="extend", nargs="+", default=[], metavar="FILE",
                    help="other templates, checked only for hard-coded aws partitions")
    args = ap.parse_args(argv)
    template_path = args.template
    if args.self_test:
        return self_test(template_path, args.translated)
    rep = run(template_path, args.extra, args.translated)
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
