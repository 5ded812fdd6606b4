"""wxtoken consumer in Python (boto3): read the token, refresh it when WeChat rejects it,
and sign a page URL for the JS-SDK with the jsapi ticket.

Run: python3 consumer.py API_URL APP [PREFIX]   (the test in consumers_test.go does)
"""
import sys

# --- README begin (python)
import hashlib
import json
import secrets
import time
import urllib.request

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

session = boto3.Session()
ssm = session.client("ssm")


def get_token(app, prefix="/wxtoken"):
    """The published token (cache it for a minute at most)."""
    name = f"{prefix}/{app}/access_token"
    return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def refresh(api_url, app, stale_token):
    """Ask wxtoken for a token to replace the one WeChat rejected (40001/40014/42001)."""
    url = f"{api_url}/v1/apps/{app}/refresh"
    body = json.dumps({"stale_token": stale_token})
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(session.get_credentials(), "execute-api", session.region_name).add_auth(req)
    http = urllib.request.Request(url, data=body.encode(), headers=dict(req.headers), method="POST")
    with urllib.request.urlopen(http, timeout=30) as resp:  # raises HTTPError on 4xx/5xx
        return json.load(resp)["access_token"]


def get_ticket(app, ticket="jsapi", prefix="/wxtoken"):
    """A published ticket: jsapi, wx_card or agent_config (cache it like the token)."""
    name = f"{prefix}/{app}/{ticket}_ticket"
    return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


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
    token = get_token(app, prefix)
    fresh = refresh(api_url, app, token)
    ticket = get_ticket(app, "jsapi", prefix)
    signed = sign_url(ticket, "https://shop.example/pay?order=42#top")
    example = sign_url(EXAMPLE[0], EXAMPLE[1], EXAMPLE[2], EXAMPLE[3])["signature"]
    # The test compares the values itself; nothing else is printed.
    json.dump({"token": token, "fresh": fresh, "ticket": ticket, "signed": signed, "example": example}, sys.stdout)
