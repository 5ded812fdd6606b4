"""wxtoken consumer in Python (boto3): read the token (and a ticket) only when something can
have changed, refresh it when WeChat rejects it, and sign a page URL for the JS-SDK.

Run: python3 consumer.py API_URL APP [PREFIX]   (the test in consumers_test.go does)
Import it (the wechatpy adapter does): nothing runs at import time.
"""
import sys

# --- README begin (python)
import calendar
import functools
import hashlib
import json
import random
import re
import secrets
import time
import urllib.error
import urllib.request

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

REJECTED = (40001, 40014, 42001)  # WeChat's errcodes for a token it no longer accepts
clock = time.time                 # replaceable in tests
_cache = {}                       # (prefix, app, kind) -> {"value", "until", "retry_at"}
_failed = {}                      # (prefix, app, kind) -> (until, the API's error)


@functools.cache
def _aws(api_url):
    """A boto3 session and SSM client in the stack's region (from its API URL if it names one)."""
    m = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", api_url)
    session = boto3.Session(region_name=m.group(1) if m else None)
    return session, session.client("ssm")


def _epoch(rfc3339):
    return calendar.timegm(time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S"))


def _schedule(version, meta):
    """(rotates_at, expires_at) in epoch seconds if meta describes this version, else None."""
    try:
        if meta["version"] == version:
            return _epoch(meta["rotates_at"]), _epoch(meta["expires_at"])
    except (KeyError, TypeError, ValueError):
        pass  # absent, malformed, or about another value
    return None


def _keep_until(now, schedule):
    """Until when a value may be used without reading it again."""
    if schedule and schedule[0] > now:  # just after the planned rotation, not near the expiry
        return min(schedule[0] + 60 + random.uniform(0, 60), schedule[1] - 120)
    return now + 60  # no schedule, or the rotation is late: a minute


def _get(api_url, app, kind, prefix):
    key, now = (prefix, app, kind), clock()
    hit = _cache.get(key)
    if hit and now < hit["until"]:
        return hit["value"]
    if key in _failed and now < _failed[key][0]:
        raise _failed[key][1]  # the API failed a moment ago: no request before its Retry-After
    name = f"{prefix}/{app}/" + ("access_token" if kind == "token" else f"{kind}_ticket")
    # One request for the value and its schedule; a missing one is left out of "Parameters".
    got = _aws(api_url)[1].get_parameters(Names=[name, name + "_meta"], WithDecryption=True)
    params = {p["Name"]: p for p in got["Parameters"]}
    value = params[name]["Value"] if name in params else None
    try:
        meta = json.loads(params[name + "_meta"]["Value"])
    except (KeyError, ValueError):
        meta = None
    schedule = value and _schedule(params[name]["Version"], meta)
    if value and not (schedule and schedule[1] - 120 <= now):
        _cache[key] = {"value": value, "until": _keep_until(now, schedule), "retry_at": 0}
        return value
    try:  # nothing published, or about to expire (the schedule is stuck): ask the API
        return _refresh(api_url, app, kind, None, prefix)
    except Exception as err:
        if value and now < schedule[1]:  # it still works: keep it a minute, never past its expiry
            _cache[key] = {"value": value, "until": min(now + 60, schedule[1]), "retry_at": 0}
            return value
        headers = getattr(err, "headers", None) or {}  # an HTTP error's; none on a network error
        _failed[key] = (now + int(headers.get("Retry-After") or 60), err)
        raise


def _refresh(api_url, app, kind, stale, prefix):
    key, now = (prefix, app, kind), clock()
    hit = _cache.get(key)
    if hit and (now < hit["retry_at"] or (stale and hit["value"] != stale and now < hit["until"])):
        return hit["value"]  # honouring Retry-After, or already replaced
    route, field = ("refresh", "access_token") if kind == "token" else (f"tickets/{kind}/refresh", "ticket")
    url = f"{api_url}/v1/apps/{app}/{route}"
    body = json.dumps({"stale_token" if kind == "token" else "stale_ticket": stale} if stale else {})
    session = _aws(api_url)[0]
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(session.get_credentials(), "execute-api", session.region_name).add_auth(req)
    http = urllib.request.Request(url, data=body.encode(), headers=dict(req.headers), method="POST")
    retry_at = 0
    try:
        with urllib.request.urlopen(http, timeout=30) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as err:  # 429 (refused for now) carries the token to keep using
        answer = json.load(err) if err.code == 429 else {}
        if not answer.get(field):
            raise
        retry_at = now + int(err.headers.get("Retry-After") or 60)
    value = answer[field]
    until = max(now + 60, retry_at, _keep_until(now, _schedule(answer.get("version"), answer)))
    _cache[key] = {"value": value, "until": until, "retry_at": retry_at}
    return value


def get_token(api_url, app, prefix="/wxtoken"):
    """The published token, read again only after its planned rotation (or a minute without one)."""
    return _get(api_url, app, "token", prefix)


def refresh(api_url, app, stale_token=None, prefix="/wxtoken"):
    """The token that replaces stale_token, which WeChat rejected (40001/40014/42001)."""
    return _refresh(api_url, app, "token", stale_token, prefix)


def get_ticket(api_url, app, ticket="jsapi", prefix="/wxtoken"):
    """A published ticket: jsapi, wx_card or agent_config (cached like the token)."""
    return _get(api_url, app, ticket, prefix)


def refresh_ticket(api_url, app, ticket, stale_ticket=None, prefix="/wxtoken"):
    """The ticket that replaces stale_ticket (a page's wx.config failed with "invalid signature")."""
    return _refresh(api_url, app, ticket, stale_ticket, prefix)


def call(api_url, app, fn, prefix="/wxtoken"):
    """fn(token) returns WeChat's JSON answer; when WeChat rejects the token, retry once."""
    token = get_token(api_url, app, prefix)
    answer = fn(token)
    if answer.get("errcode") in REJECTED:
        answer = fn(refresh(api_url, app, token, prefix))
    return answer


def sign_url(jsapi_ticket, url, noncestr=None, timestamp=None):
    """wx.config's signature of a page URL (JS-SDK 附录1; WeCom's wx.agentConfig alike)."""
    noncestr = noncestr or secrets.token_hex(8)
    timestamp = timestamp or int(time.time())
    url = url.split("#")[0]
    plain = f"jsapi_ticket={jsapi_ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return {"nonceStr": noncestr, "timestamp": timestamp, "url": url,
            "signature": hashlib.sha1(plain.encode()).hexdigest()}
# --- README end (python)


# WeChat's worked example (附录1): its signature is 0f9de62fce790f9a083d5c99e95740ceb90c27ed.
EXAMPLE = ("sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
           "http://mp.weixin.qq.com?params=value", "Wm3WZYTPz0wzccnW", 1414587457)

if __name__ == "__main__":
    api_url, app = sys.argv[1], sys.argv[2]
    prefix = sys.argv[3] if len(sys.argv) > 3 else "/wxtoken"
    token = get_token(api_url, app, prefix)
    fresh = refresh(api_url, app, token, prefix)
    ticket = get_ticket(api_url, app, "jsapi", prefix)
    signed = sign_url(ticket, "https://shop.example/pay?order=42#top")
    example = sign_url(EXAMPLE[0], EXAMPLE[1], EXAMPLE[2], EXAMPLE[3])["signature"]
    # The test compares the values itself; nothing else is printed.
    json.dump({"token": token, "fresh": fresh, "ticket": ticket, "signed": signed, "example": example}, sys.stdout)
