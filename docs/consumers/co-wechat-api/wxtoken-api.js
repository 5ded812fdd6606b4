// co-wechat-api on wxtoken: the SDK's API class with its access token from
// wxtoken instead of from WeChat. It never calls WeChat's token endpoint and
// holds no AppSecret: the token comes through the getToken callback, and a
// token WeChat rejects is replaced by wxtoken's refresh with that token, the
// call retried once.
//
//   const { wxtoken } = require("./consumer");         // the README's Node.js snippet
//   const WxtokenAPI = require("./wxtoken-api");
//   const api = new WxtokenAPI("wx1234567890abcdef", wxtoken({ apiUrl, app: "shop" }));
//   const { ip_list } = await api.getIp();               // any co-wechat-api call
const API = require("co-wechat-api");

// WeChat's answers to a token it no longer takes (co-wechat-api retries only the first and last).
const REJECTED = [40001, 40014, 42001];

class WxtokenAPI extends API {
  // source is where tokens come from: anything with token() and refresh(staleToken), such as the
  // snippet's wxtoken({ apiUrl, app }) (a fake in your own tests).
  constructor(appid, source) {
    // getToken: wxtoken's value, which source caches by its own rule; expireTime Infinity because
    // WeChat's rejection, not a local guess of the expiry, says when it is stale. saveToken: nothing
    // to save, wxtoken publishes the token.
    super(appid, undefined, async () => ({ accessToken: await source.token(), expireTime: Infinity }), async () => {});
    this.source = source;
  }

  // The SDK calls this to fetch a token from WeChat (/cgi-bin/token with the AppSecret) when it has
  // none or after a 40001: the token is wxtoken's instead.
  async getAccessToken() {
    return new API.AccessToken(await this.source.token(), Infinity);
  }

  // The SDK's request retries a 40001 or 42001 up to three times, each after getAccessToken. Here its
  // own retry is off (retry 0) and a rejected token is replaced by wxtoken's refresh with it, once.
  async request(url, opts, retry = 1) {
    try {
      return await super.request(url, opts, 0);
    } catch (err) {
      const stale = /[?&]access_token=([^&#]*)/.exec(url)?.[1];
      if (retry < 1 || !stale || !REJECTED.includes(err.code)) throw err;
      const fresh = await this.source.refresh(stale);
      return this.request(url.replace(`access_token=${stale}`, () => `access_token=${fresh}`), opts, 0);
    }
  }
}

module.exports = WxtokenAPI;
