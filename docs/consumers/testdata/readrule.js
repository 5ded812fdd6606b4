// The read rule of the README's Node.js snippet (consumer.js), driven by
// consumerjs_test.go: one process, a clock the test moves, and a count of
// the SSM requests the snippet makes. Commands on stdin, one a line:
//   new        a new wxtoken({...}) (an empty cache), same clock and counts
//   advance S  move the clock S seconds on
//   token      print {"token":...,"reads":N,"other":M}: N GetParameters requests so far, M other SSM requests
//   quit       exit
//
// Run: node readrule.js API_URL APP PREFIX START_MS   (NODE_PATH=.cache/node/node_modules)
const readline = require("node:readline");
const { SSMClient } = require("@aws-sdk/client-ssm");
const { wxtoken } = require("../consumer");

const [apiUrl, app, prefix, start] = process.argv.slice(2);
let clock = Number(start), reads = 0, other = 0, shop;
const ssm = new SSMClient({ region: process.env.AWS_REGION });
ssm.middlewareStack.add((next, context) => (args) => {
  if (context.commandName === "GetParametersCommand") reads++; else other++;
  return next(args);
}, { step: "initialize", name: "countRequests" });

const out = (v) => process.stdout.write(JSON.stringify(v) + "\n");
(async () => {
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const [cmd, arg] = line.trim().split(/\s+/);
    switch (cmd) {
      case "new":
        shop = wxtoken({ apiUrl, app, prefix, ssm, now: () => clock });
        out({ ok: true });
        break;
      case "advance":
        clock += Number(arg) * 1000;
        out({ ok: true });
        break;
      case "token":
        try {
          out({ token: await shop.token(), reads, other });
        } catch (err) {
          out({ error: err.message, reads, other });
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
