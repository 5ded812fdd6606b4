"""The test's driver (wechatpy_test.go): one client, commands from stdin, one JSON line each.

Run: python driver.py oa|wecom APPID API_URL APP PREFIX WECHAT_BASE_URL
with consumer.py importable (PYTHONPATH=docs/consumers). Commands:
    call   the SDK's own business call, client.misc.get_wechat_ips() (getcallbackip):
           {"ok": true} or {"ok": false, "errcode": N} (or "error": the exception's type)
    quit
Tokens are never printed.
"""
import json
import sys

from wechatpy.exceptions import WeChatClientException

from wxtoken_wechatpy import WeChatClient, WeComClient


def main():
    kind, appid, api_url, app, prefix, base_url = sys.argv[1:7]
    client = (WeChatClient if kind == "oa" else WeComClient)(appid, api_url=api_url, app=app, prefix=prefix)
    client.API_BASE_URL = base_url.rstrip("/") + "/cgi-bin/"  # the sandbox instead of api.weixin.qq.com
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            return
        if cmd != "call":
            out = {"ok": False, "error": "unknown command"}
        else:
            try:
                client.misc.get_wechat_ips()
                out = {"ok": True}
            except WeChatClientException as err:
                out = {"ok": False, "errcode": err.errcode}
            except Exception as err:  # wxtoken's API or the network: its type only
                out = {"ok": False, "error": type(err).__name__}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
