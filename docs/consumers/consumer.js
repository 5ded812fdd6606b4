// wxtoken consumer in Node.js (AWS SDK for JavaScript v3): read the token,
// refresh it when WeChat rejects it, and sign a page URL for the JS-SDK with
// the jsapi ticket. It reads SSM only when something can have changed: the
// token and its schedule (the `_meta` parameter) come in one GetParameters
// request, and the token is kept until just after wxtoken's next planned
// rotation.
//
// Run: node consumer.js API_URL APP [PREFIX]   (the test in consumers_test.go does)
// Use: const { wxtoken } = require("./consumer");  (the co-wechat-api adapter does)

// --- README begin (node)
const crypto = require("node:crypto");
const { SSMClient, GetParametersCommand } = require("@aws-sdk/client-ssm");
const { SignatureV4 } = require("@smithy/signature-v4");
const { Sha256 } = require("@aws-crypto/sha256-js");
const { defaultProvider } = require("@aws-sdk/credential-provider-node");

const MINUTE = 60_000;
const REJECTED = [40001, 40014, 42001]; // WeChat's answers to a token it no longer takes

// wxtoken({ apiUrl, app }) is an app's token (and tickets) from wxtoken: token(), refresh(stale),
// call(fn), ticket("jsapi"|"wx_card"|"agent_config"), refreshTicket(type, stale). The region is
// the API's (from its URL, else AWS_REGION): SSM is read and requests are signed there.
function wxtoken({ apiUrl, app, prefix = "/wxtoken", now = Date.now,
  region = /\.execute-api\.([a-z0-9-]+)\./.exec(new URL(apiUrl).hostname)?.[1] ?? process.env.AWS_REGION,
  ssm = new SSMClient({ region }) }) {
  const signer = new SignatureV4({ service: "execute-api", region, credentials: defaultProvider(), sha256: Sha256 });
  const cache = new Map(), pending = new Map(), retryAt = new Map(), failed = new Map();
  const once = (key, fn) => pending.get(key) ?? pending.set(key, fn().finally(() => pending.delete(key))).get(key);
  const name = (t) => `${prefix}/${app}/${t ? `${t}_ticket` : "access_token"}`; // t: a ticket type, "" for the token

  // Keep a value until just after the next planned rotation (plus up to a minute of jitter to spread
  // a fleet's reads), never within 2 min of its expiry; 60 s if the schedule (m: the meta or an API
  // answer) is not this value's or the rotation is already due. An API answer is kept `min` at least.
  function keep(t, value, version, m, min = 0) {
    const at = now(), rotates = Date.parse(m?.rotates_at), expires = Date.parse(m?.expires_at);
    let until = at + MINUTE;
    if (m?.version === version && at < rotates && rotates < expires) {
      until = Math.min(rotates + MINUTE + Math.random() * MINUTE, expires - 2 * MINUTE);
    }
    cache.set(name(t), { value, until: Math.max(until, at + min) });
    return value;
  }

  // The value: cached, or read with its meta in one request. Nothing published, or a value about to
  // expire (wxtoken's schedule is stuck): ask the API. If that fails, a value that still works is kept
  // a minute (never past its expiry); with none, the failure is thrown again, without a request,
  // until its Retry-After (else a minute).
  async function get(t) {
    const c = cache.get(name(t)), f = failed.get(name(t));
    if (c && now() < c.until) return c.value;
    if (f && now() < f.until) throw f.err;
    return once(name(t), async () => {
      const out = await ssm.send(new GetParametersCommand({ Names: [name(t), `${name(t)}_meta`], WithDecryption: true }));
      const p = out.Parameters?.find((x) => x.Name === name(t));
      let m;
      try { m = JSON.parse(out.Parameters?.find((x) => x.Name === `${name(t)}_meta`)?.Value); } catch { m = undefined; }
      const expires = p && m?.version === p.Version ? Date.parse(m.expires_at) : NaN;
      if (p && !(now() >= expires - 2 * MINUTE)) return keep(t, p.Value, p.Version, m);
      try {
        return await refresh(t, "");
      } catch (err) {
        if (p && now() < expires) {
          cache.set(name(t), { value: p.Value, until: Math.min(now() + MINUTE, expires) });
          return p.Value;
        }
        failed.set(name(t), { err, until: err.retryAt ?? now() + MINUTE });
        throw err;
      }
    });
  }

  // Ask wxtoken for the value that replaces stale (WeChat rejected it; "" when there is none) and keep
  // its answer at least a minute. A 429 carries the current value: use it (read again once a minute at
  // most), ask again after Retry-After.
  async function refresh(t, stale) {
    const c = cache.get(name(t)), wait = retryAt.get(name(t)) ?? 0;
    if (c && now() < wait) {
      c.until = Math.max(c.until, Math.min(wait, now() + MINUTE));
      return c.value;
    }
    return once(`${name(t)} ${stale}`, async () => {
      const url = new URL(`${apiUrl}/v1/apps/${app}/${t ? `tickets/${t}/refresh` : "refresh"}`);
      const body = JSON.stringify(stale ? { [t ? "stale_ticket" : "stale_token"]: stale } : {});
      const signed = await signer.sign({
        method: "POST", protocol: url.protocol, hostname: url.hostname, port: url.port, path: url.pathname,
        headers: { host: url.host, "content-type": "application/json" }, body,
      });
      const resp = await fetch(url, { method: "POST", headers: signed.headers, body });
      const answer = await resp.json();
      const value = answer[t ? "ticket" : "access_token"], after = now() + 1000 * (Number(resp.headers.get("retry-after")) || 60);
      if (resp.status === 429) retryAt.set(name(t), after);
      if (!value || !(resp.ok || resp.status === 429)) {
        throw Object.assign(new Error(`wxtoken answered ${resp.status}: ${answer.error?.code}`), { retryAt: after });
      }
      return keep(t, value, answer.version, answer, MINUTE);
    });
  }

  return {
    token: () => get(""),
    refresh: (staleToken) => refresh("", staleToken),
    ticket: (type = "jsapi") => get(type),
    refreshTicket: (type, staleTicket) => refresh(type, staleTicket),
    // call(fn): fn(token) makes a WeChat call and returns its JSON answer; when WeChat rejects the
    // token, call asks wxtoken for the one that replaces it and calls fn once more.
    async call(fn) {
      const token = await get("");
      const answer = await fn(token);
      return REJECTED.includes(answer?.errcode) ? fn(await refresh("", token)) : answer;
    },
  };
}

// wx.config's signature of a page URL (JS-SDK 附录1; WeCom's wx.agentConfig alike).
function signUrl(jsapiTicket, pageUrl, nonceStr = crypto.randomBytes(8).toString("hex"), timestamp = Math.floor(Date.now() / 1000)) {
  const url = pageUrl.split("#")[0];
  const plain = `jsapi_ticket=${jsapiTicket}&noncestr=${nonceStr}&timestamp=${timestamp}&url=${url}`;
  const signature = crypto.createHash("sha1").update(plain).digest("hex");
  return { nonceStr, timestamp, url, signature };
}

module.exports = { wxtoken, signUrl, REJECTED };
// --- README end (node)

// WeChat's worked example (附录1): its signature is 0f9de62fce790f9a083d5c99e95740ceb90c27ed.
const EXAMPLE = ["sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
  "http://mp.weixin.qq.com?params=value", "Wm3WZYTPz0wzccnW", 1414587457];

if (require.main === module) {
  (async () => {
    const [apiUrl, app, prefix = "/wxtoken"] = process.argv.slice(2);
    const shop = wxtoken({ apiUrl, app, prefix });
    const token = await shop.token();
    const fresh = await shop.refresh(token); // as after WeChat rejected it
    const ticket = await shop.ticket("jsapi");
    const signed = signUrl(ticket, "https://shop.example/pay?order=42#top");
    const example = signUrl(...EXAMPLE).signature;
    // The test compares the values itself; nothing else is printed.
    process.stdout.write(JSON.stringify({ token, fresh, ticket, signed, example }));
  })().catch((err) => {
    console.error(err.message);
    process.exit(1);
  });
}
