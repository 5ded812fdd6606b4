// wxtoken consumer in Node.js (AWS SDK for JavaScript v3): read the token,
// refresh it when WeChat rejects it, and sign a page URL for the JS-SDK with
// the jsapi ticket.
//
// Run: node consumer.js API_URL APP [PREFIX]   (the test in consumers_test.go does)

// --- README begin (node)
const crypto = require("node:crypto");
const { SSMClient, GetParameterCommand } = require("@aws-sdk/client-ssm");
const { SignatureV4 } = require("@smithy/signature-v4");
const { Sha256 } = require("@aws-crypto/sha256-js");
const { defaultProvider } = require("@aws-sdk/credential-provider-node");

const region = process.env.AWS_REGION;
const ssm = new SSMClient({ region });

// The published token (cache it for a minute at most).
async function getToken(app, prefix = "/wxtoken") {
  const out = await ssm.send(new GetParameterCommand({ Name: `${prefix}/${app}/access_token`, WithDecryption: true }));
  return out.Parameter.Value;
}

// Ask wxtoken for a token to replace the one WeChat rejected (40001/40014/42001).
async function refresh(apiUrl, app, staleToken) {
  const url = new URL(`${apiUrl}/v1/apps/${app}/refresh`);
  const body = JSON.stringify({ stale_token: staleToken });
  const signer = new SignatureV4({ service: "execute-api", region, credentials: defaultProvider(), sha256: Sha256 });
  const signed = await signer.sign({
    method: "POST", protocol: url.protocol, hostname: url.hostname, port: url.port, path: url.pathname,
    headers: { host: url.host, "content-type": "application/json" }, body,
  });
  const resp = await fetch(url, { method: "POST", headers: signed.headers, body });
  const answer = await resp.json();
  if (!resp.ok) throw new Error(`wxtoken answered ${resp.status}: ${answer.error?.code}`);
  return answer.access_token;
}

// A published ticket: jsapi, wx_card or agent_config (cache it like the token).
async function getTicket(app, ticket = "jsapi", prefix = "/wxtoken") {
  const out = await ssm.send(new GetParameterCommand({ Name: `${prefix}/${app}/${ticket}_ticket`, WithDecryption: true }));
  return out.Parameter.Value;
}

// wx.config's signature of a page URL (JS-SDK 附录1; WeCom's wx.agentConfig alike).
function signUrl(jsapiTicket, pageUrl, nonceStr = crypto.randomBytes(8).toString("hex"), timestamp = Math.floor(Date.now() / 1000)) {
  const url = pageUrl.split("#")[0];
  const plain = `jsapi_ticket=${jsapiTicket}&noncestr=${nonceStr}&timestamp=${timestamp}&url=${url}`;
  const signature = crypto.createHash("sha1").update(plain).digest("hex");
  return { nonceStr, timestamp, url, signature };
}
// --- README end (node)

// WeChat's worked example (附录1): its signature is 0f9de62fce790f9a083d5c99e95740ceb90c27ed.
const EXAMPLE = ["sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
  "http://mp.weixin.qq.com?params=value", "Wm3WZYTPz0wzccnW", 1414587457];

(async () => {
  const [apiUrl, app, prefix = "/wxtoken"] = process.argv.slice(2);
  const token = await getToken(app, prefix);
  const fresh = await refresh(apiUrl, app, token);
  const ticket = await getTicket(app, "jsapi", prefix);
  const signed = signUrl(ticket, "https://shop.example/pay?order=42#top");
  const example = signUrl(...EXAMPLE).signature;
  // The test compares the values itself; nothing else is printed.
  process.stdout.write(JSON.stringify({ token, fresh, ticket, signed, example }));
})().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
