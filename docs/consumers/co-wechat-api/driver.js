// The test's driver (cowechatapi_test.go): co-wechat-api through the adapter,
// one process for the whole test, reading commands from stdin, one a line:
//   call  the SDK's own business call, api.getIp() (getcallbackip); prints
//         {"ok":true} or {"ok":false,"errcode":N}
//   quit  exit
//
// Run: node driver.js API_URL APP APPID PREFIX WECHAT_URL
// (with NODE_PATH=.cache/co-wechat-api/node_modules and AWS credentials in env).
const readline = require("node:readline");
const { wxtoken } = require("../consumer");
const WxtokenAPI = require("./wxtoken-api");

const [apiUrl, app, appid, prefix, wechatUrl] = process.argv.slice(2);
const api = new WxtokenAPI(appid, wxtoken({ apiUrl, app, prefix }));
api.prefix = `${wechatUrl}/cgi-bin/`; // the WeChat sandbox instead of api.weixin.qq.com

const out = (v) => process.stdout.write(JSON.stringify(v) + "\n");
const lines = readline.createInterface({ input: process.stdin });
(async () => {
  for await (const line of lines) {
    switch (line.trim()) {
      case "call":
        try {
          await api.getIp();
          out({ ok: true });
        } catch (err) {
          out({ ok: false, errcode: typeof err.code === "number" ? err.code : 0 });
          // The SDK's messages may quote the URL, whose query holds the token.
          if (typeof err.code !== "number") console.error(String(err.message).replace(/access_token=[^&\s]*/g, "access_token=..."));
        }
        break;
      case "quit":
        process.exit(0);
      default:
        console.error(`unknown command ${JSON.stringify(line)}`);
        process.exit(2);
    }
  }
})();
