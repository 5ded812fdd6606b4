// wxtoken consumer in Node.js (AWS SDK for JavaScript v3): read the token,
// refresh it when WeChat rejects it.
//
// Run: node consumer.js API_URL APP [PREFIX]   (the test in consumers_test.go does)

// --- README begin (node)
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
// --- README end (node)

(async () => {
  const [apiUrl, app, prefix = "/wxtoken"] = process.argv.slice(2);
  const token = await getToken(app, prefix);
  const fresh = await refresh(apiUrl, app, token);
  process.stdout.write(JSON.stringify({ token, fresh }));
})().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
