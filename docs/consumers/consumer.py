"""wxtoken consumer in Python (boto3): read the token, refresh it when WeChat rejects it.

Run: python3 consumer.py API_URL APP [PREFIX]   (the test in consumers_test.go does)
"""
import json
import sys
import urllib.request

# --- README begin (python)
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
# --- README end (python)


if __name__ == "__main__":
    api_url, app = sys.argv[1], sys.argv[2]
    prefix = sys.argv[3] if len(sys.argv) > 3 else "/wxtoken"
    token = get_token(app, prefix)
    fresh = refresh(api_url, app, token)
    # Only fingerprints-worthy facts on stdout: the test compares the tokens itself.
    json.dump({"token": token, "fresh": fresh}, sys.stdout)
