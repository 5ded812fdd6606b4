"""wechatpy 1.8.18 clients whose access token comes from wxtoken.

    from wxtoken_wechatpy import WeChatClient           # or WeComClient
    client = WeChatClient("wx1234567890abcdef", api_url=API_URL, app="shop")
    client.misc.get_wechat_ips()                        # any wechatpy call, unchanged

The token is read through consumer.py (the README's Python snippet; copy it beside this
file): from SSM, only when its planned rotation has passed. When WeChat rejects it
(40001/40014/42001), wxtoken's refresh route is asked for the token that replaces the
rejected one and the call is retried once; a second rejection raises wechatpy's
WeChatClientException. wechatpy itself never calls WeChat's token endpoint, and its own
retry (which recurses without bound) is switched off.
"""
import consumer
import wechatpy
import wechatpy.enterprise
from wechatpy.exceptions import WeChatClientException


class _FromWxToken:
    """What both clients share: the token from wxtoken, one bounded retry through wxtoken."""

    def _use_wxtoken(self, api_url, app, prefix):
        self.wxtoken = (api_url, app, prefix)
        self.auto_retry = False  # wechatpy's retry calls fetch_access_token again and again

    @property
    def access_token(self):
        """The token wxtoken published (cached by consumer.py)."""
        api_url, app, prefix = self.wxtoken
        return consumer.get_token(api_url, app, prefix)

    def fetch_access_token(self):
        """wechatpy's "get a new token": the one wxtoken holds now, never WeChat's token endpoint."""
        api_url, app, prefix = self.wxtoken
        return {"access_token": consumer.refresh(api_url, app, self.access_token, prefix)}

    def _request(self, method, url_or_endpoint, **kwargs):
        params = kwargs.get("params") or {}
        if not isinstance(params, dict) or "access_token" in params:
            return super()._request(method, url_or_endpoint, **kwargs)  # a token of the caller's own
        token = self.access_token
        try:
            return super()._request(method, url_or_endpoint, **dict(kwargs, params=dict(params, access_token=token)))
        except WeChatClientException as err:
            if err.errcode not in consumer.REJECTED:
                raise
        api_url, app, prefix = self.wxtoken
        fresh = consumer.refresh(api_url, app, token, prefix)  # compare-and-refresh with the rejected token
        return super()._request(method, url_or_endpoint, **dict(kwargs, params=dict(params, access_token=fresh)))


class WeChatClient(_FromWxToken, wechatpy.WeChatClient):
    """wechatpy.WeChatClient (Official Account, Mini Program) with its token from wxtoken app `app`.

    secret is only for the few calls that send the AppSecret itself (wxa.code_to_session);
    the token never needs it.
    """

    def __init__(self, appid, api_url, app, prefix="/wxtoken", secret=None, session=None, timeout=None):
        super().__init__(appid, secret, session=session, timeout=timeout)
        self._use_wxtoken(api_url, app, prefix)


class WeComClient(_FromWxToken, wechatpy.enterprise.WeChatClient):
    """wechatpy.enterprise.WeChatClient (WeCom) with its token from wxtoken app `app`."""

    def __init__(self, corp_id, api_url, app, prefix="/wxtoken", session=None, timeout=None):
        super().__init__(corp_id, "", session=session, timeout=timeout)  # no secret: wxtoken holds it
        self._use_wxtoken(api_url, app, prefix)
