package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	cwltypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
	"github.com/wxtoken/wxtoken/pkg/testsupport/runbook"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// --- pure parts

func TestSafeFlagError(t *testing.T) {
	tests := []struct{ in, want string }{
		{`invalid value "s3cr3t" for flag -budget: parse error`, "invalid value for flag -budget: "},
		{`invalid boolean value "s3cr3t" for flag -local: parse error`, "invalid value for flag -local: "},
		{"flag provided but not defined: -x", "flag provided but not defined: -x"},
	}
	for _, tt := range tests {
		if got := safeFlagError(errors.New(tt.in)); got != tt.want {
			t.Errorf("safeFlagError(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAdviceFor(t *testing.T) {
	tests := []struct {
		code    int
		ip      string
		problem string
		fix     string
	}{
		{40164, "203.0.113.7", "from IP 203.0.113.7", "add 203.0.113.7 to the account's IP whitelist"},
		{40164, "", "the whitelist_ip of the functions'", "apps unblock shop"},
		{61004, "198.51.100.2", "198.51.100.2", "IP白名单"},
		{60020, "198.51.100.3", "198.51.100.3", "企业可信IP"},
		{40125, "", "AppSecret is wrong", "wxtoken apps secret shop < secret.txt"},
		{40001, "", "AppSecret is wrong", "ends by itself at the next scheduled run"},
		{40013, "", "appid", "wxtoken apps set shop --appid"},
		{12345, "", "errcode 12345", "runbook"},
	}
	for _, tt := range tests {
		a := adviceFor(tt.code, "shop", tt.ip)
		if !strings.Contains(a.Problem, tt.problem) || !strings.Contains(a.Fix, tt.fix) {
			t.Errorf("adviceFor(%d, %q) = %+v, want problem ~%q, fix ~%q", tt.code, tt.ip, a, tt.problem, tt.fix)
		}
	}
}

func TestIPIn(t *testing.T) {
	log := `{"event":"refresh_failed","app":"shop","whitelist_ip":"203.0.113.1"}
not json
{"event":"refresh_failed","app":"other","whitelist_ip":"203.0.113.2"}
{"event":"refresh_failed","app":"shop","errcode":40125}
{"event":"request","app":"shop","whitelist_ip":"203.0.113.3"}
{"event":"refresh_failed","app":"shop","whitelist_ip":"203.0.113.4"}
`
	tests := []struct{ app, want string }{{"shop", "203.0.113.4"}, {"other", "203.0.113.2"}, {"none", ""}}
	for _, tt := range tests {
		if got := ipIn(strings.NewReader(log), tt.app); got != tt.want {
			t.Errorf("ipIn(%s) = %q, want %q", tt.app, got, tt.want)
		}
	}
}

func TestLocalTarget(t *testing.T) {
	dir := t.TempDir()
	if _, err := localTarget(dir); codeOf(err) != ExitFailed || !strings.Contains(err.Error(), "make dev") {
		t.Fatalf("no env file: %v, want a failure naming make dev", err)
	}
	engines := "export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8000\nexport AWS_ENDPOINT_URL_SSM=http://127.0.0.1:5000\nexport AWS_REGION=us-east-1\nexport AWS_ACCESS_KEY_ID=test\nexport AWS_SECRET_ACCESS_KEY=test\n"
	// An env file of an older make dev names no table, prefix or API.
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(engines), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := localTarget(dir); codeOf(err) != ExitFailed || !strings.Contains(err.Error(), "restart make dev") {
		t.Fatalf("an env file without the stack: %v, want a failure asking to restart make dev", err)
	}
	stack := "export WXTOKEN_TABLE=wxtoken-dev\nexport WXTOKEN_PARAMETER_PREFIX=/wxtoken\nexport WXTOKEN_API_URL=http://127.0.0.1:8080\nexport WXTOKEN_WECHAT_BASE_URLS=http://127.0.0.1:8081\n"
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(engines+stack), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := localTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := target{Name: "make dev", Region: "us-east-1", Table: "wxtoken-dev", Prefix: "/wxtoken", APIURL: "http://127.0.0.1:8080",
		WeChatURLs:       []string{"http://127.0.0.1:8081"},
		DynamoDBEndpoint: "http://127.0.0.1:8000", SSMEndpoint: "http://127.0.0.1:5000", AccessKeyID: "test", SecretAccessKey: "test"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// TestUsage: usage errors exit 2 before any AWS call, and help exits 0.
func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code ExitCode
		says string
	}{
		{"no command", nil, ExitUsage, "usage: wxtoken"},
		{"help", []string{"help"}, ExitOK, "Exit codes"},
		{"command help", []string{"apps", "add", "--help"}, ExitOK, "refused (exit 4)"},
		{"help of a command", []string{"help", "apps", "unblock"}, ExitOK, "usage: wxtoken apps unblock NAME"},
		{"unknown command", []string{"apps", "frobnicate"}, ExitUsage, "unknown command"},
		{"no deployment", []string{"apps", "list"}, ExitUsage, "which deployment?"},
		{"stack and local", []string{"--stack", "x", "--local", "apps", "list"}, ExitUsage, "exclude each other"},
		{"missing name", []string{"--local", "apps", "show"}, ExitUsage, "wrong number of arguments (0)"},
		{"bad flag value", []string{"--local", "apps", "add", "x", "--budget", "s3cr3t"}, ExitUsage, "invalid value for flag -budget"},
		{"plain http WeChat", []string{"--local", "--wechat-url", "http://api.weixin.qq.com", "apps", "clear-quota", "x"}, ExitUsage, "--wechat-url: entry 1: plain http is allowed only to a loopback address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &cli{getenv: func(string) string { return "" }, now: time.Now,
				loadAWS: func(context.Context, string, aws.CredentialsProvider) (aws.Config, error) {
					t.Fatal("usage errors must not load AWS")
					return aws.Config{}, nil
				}}
			var out, errOut bytes.Buffer
			code := c.run(context.Background(), tt.args, strings.NewReader(""), &out, &errOut)
			if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.says) {
				t.Errorf("exit %d, want %d; output:\n%s%s\nwant it to say %q", code, tt.code, out.String(), errOut.String(), tt.says)
			}
			if strings.Contains(out.String()+errOut.String(), "s3cr3t") {
				t.Errorf("a flag's value was echoed:\n%s%s", out.String(), errOut.String())
			}
		})
	}
}

// --- against the local stack

// bed is the command run in-process against a stacktest stack.
type bed struct {
	t      *testing.T
	stack  *stacktest.Stack
	cli    *cli
	db     *dynamodb.Client
	ssm    *ssm.Client
	shown  strings.Builder // everything the command printed, but the token command's stdout
	tokens []string
}

func newBed(t *testing.T) *bed {
	s := stacktest.New(t, stacktest.Options{})
	b := &bed{t: t, stack: s, db: dynamodb.NewFromConfig(s.Cfg), ssm: ssm.NewFromConfig(s.Cfg)}
	// The functions' log, where the command finds the IP of a whitelist
	// refusal (as it reads make dev's functions.log).
	logPath := filepath.Join(t.TempDir(), "functions.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	s.Refresher.Logger = slog.New(slog.NewJSONHandler(io.MultiWriter(logFile, leakscan.Sink(t, "wxtoken-cli")), nil))
	b.cli = &cli{
		getenv:     func(string) string { return "" },
		loadAWS:    func(context.Context, string, aws.CredentialsProvider) (aws.Config, error) { return s.Cfg, nil },
		apiCreds:   stacktest.Creds,
		httpClient: &http.Client{Timeout: 30 * time.Second},
		now:        s.Sandbox.Now,
		ips:        fileIPs{path: logPath},
	}
	t.Cleanup(func() {
		for _, secret := range append(b.stack.Secrets, b.secretsUsed()...) {
			if strings.Contains(b.shown.String(), secret) {
				t.Errorf("a secret appeared in the command's output")
			}
		}
		for _, tok := range append(b.tokens, b.stack.Sandbox.Issued()...) {
			if strings.Contains(b.shown.String(), tok) {
				t.Errorf("a token appeared in the command's output")
			}
		}
	})
	return b
}

// secrets the tests pipe in.
func (b *bed) secretsUsed() []string {
	var out []string
	for _, n := range []string{"shop", "mp", "walled", "wrongsecret", "wrongid", "corp", "corp2", "x"} {
		out = append(out, secretFor(n), "wrong-"+secretFor(n))
	}
	return out
}

func secretFor(name string) string {
	return "0123456789abcdef" + fmt.Sprintf("%016x", len(name)*7919) + name
}

// run runs the command with the stack's coordinates and stdin.
func (b *bed) run(stdin string, args ...string) (ExitCode, string, string) {
	b.t.Helper()
	full := append([]string{"--table", b.stack.Table, "--prefix", b.stack.Prefix, "--api-url", b.stack.APIURL}, args...)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := b.cli.run(ctx, full, strings.NewReader(stdin), &out, &errOut)
	if len(args) == 0 || args[0] != "token" {
		b.shown.WriteString(out.String())
	}
	b.shown.WriteString(errOut.String())
	return code, out.String(), errOut.String()
}

// want runs the command and checks its exit code and that its output says
// each of says.
func (b *bed) want(code ExitCode, says []string, stdin string, args ...string) string {
	b.t.Helper()
	got, out, errOut := b.run(stdin, args...)
	all := out + errOut
	if got != code {
		b.t.Fatalf("wxtoken %s: exit %d, want %d; output:\n%s", strings.Join(args, " "), got, code, all)
	}
	for _, s := range says {
		if !strings.Contains(all, s) {
			b.t.Errorf("wxtoken %s: output does not say %q:\n%s", strings.Join(args, " "), s, all)
		}
	}
	return out
}

// sandbox registers an account with WeChat's sandbox.
func (b *bed) sandbox(appid, secret string, kind wechattest.Kind, allowed ...string) {
	b.stack.Sandbox.AddApp(wechattest.App{AppID: appid, Secret: secret, Kind: kind, AllowedIPs: allowed})
}

func (b *bed) item(name string) map[string]ddbtypes.AttributeValue {
	b.t.Helper()
	out, err := b.db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(b.stack.Table), Key: appKey(name), ConsistentRead: aws.Bool(true)})
	if err != nil {
		b.t.Fatal(err)
	}
	return out.Item
}

func (b *bed) stateItem(name string) map[string]ddbtypes.AttributeValue {
	b.t.Helper()
	out, err := b.db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(b.stack.Table), Key: stateKey(name), ConsistentRead: aws.Bool(true)})
	if err != nil {
		b.t.Fatal(err)
	}
	return out.Item
}

// param returns a parameter's value ("" when it does not exist).
func (b *bed) param(name string) string {
	b.t.Helper()
	out, err := b.ssm.GetParameter(context.Background(), &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	var nf *ssmtypes.ParameterNotFound
	if errors.As(err, &nf) {
		return ""
	}
	if err != nil {
		b.t.Fatal(err)
	}
	return aws.ToString(out.Parameter.Value)
}

func (b *bed) secretParam(name string) string {
	return b.param(b.stack.Prefix + "/" + name + "/secret")
}
func (b *bed) tokenParam(name string) string {
	return b.param(b.stack.Prefix + "/" + name + "/access_token")
}

const (
	mpID   = "wx00000000000000a2"
	shopID = "wx00000000000000a1"
	corpID = "ww00000000000000c1"
)

// TestLifecycle: add, list, show, token, set, secret, remove of one app.
func TestLifecycle(t *testing.T) {
	b := newBed(t)
	b.sandbox(shopID, secretFor("shop"), wechattest.OfficialAccount)

	b.want(ExitOK, []string{"Registered shop", "offiaccount, stable mode, appid " + shopID, b.stack.Prefix + "/shop/secret (version 1, key alias/aws/ssm)", "published (version 1), expires"},
		secretFor("shop")+"\n", "apps", "add", "shop", "--appid", shopID, "--kind", "offiaccount")
	// The item exactly as registry.Item writes it, the secret as given.
	want := registry.Item(registry.App{Name: "shop", AppID: shopID, Kind: registry.OfficialAccount})
	if got := b.item("shop"); !sameItem(got, want) {
		t.Errorf("item %v, want %v", got, want)
	}
	if got := b.secretParam("shop"); got != secretFor("shop") {
		t.Errorf("the stored secret is not the one piped in")
	}
	tok, _ := b.stack.Published("shop")
	b.tokens = append(b.tokens, tok)

	// list, human and JSON.
	b.want(ExitOK, []string{"NAME", "shop", "offiaccount", "stable", "1/1000", "2h00m"}, "", "apps", "list")
	var list struct {
		Apps []appView `json:"apps"`
	}
	if err := json.Unmarshal([]byte(b.want(ExitOK, nil, "", "apps", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Apps) != 1 || list.Apps[0].Name != "shop" || list.Apps[0].CallsToday != 1 || list.Apps[0].ExpiresInS == nil || *list.Apps[0].ExpiresInS < 7000 {
		t.Errorf("list --json: %+v", list.Apps)
	}

	// show, and token (the only command that prints the token).
	b.want(ExitOK, []string{"account:", shopID, "access_token version 1", "calls today: 1 of 1000", "/shop/secret (version 1)"}, "", "apps", "show", "shop")
	if out := b.want(ExitOK, []string{"warning: this is the live access token of shop"}, "", "token", "shop"); strings.TrimSpace(out) != tok {
		t.Errorf("token printed %q, want the published token", out)
	}

	// set: validated like add.
	b.want(ExitOK, []string{"Updated shop: daily_budget 1000 → 300"}, "", "apps", "set", "shop", "--budget", "300")
	if n, _ := b.item("shop")["daily_budget"].(*ddbtypes.AttributeValueMemberN); n == nil || n.Value != "300" {
		t.Errorf("daily_budget %v, want 300", b.item("shop")["daily_budget"])
	}
	b.want(ExitInvalid, []string{"refresh_margin_s 6000 is over 5400"}, "", "apps", "set", "shop", "--mode", "classic", "--margin", "6000")
	b.want(ExitInvalid, []string{"daily_budget 10 is under 24"}, "", "apps", "set", "shop", "--budget", "10")
	b.want(ExitInvalid, []string{`mode "turbo"`}, "", "apps", "set", "shop", "--mode", "turbo")
	b.want(ExitUsage, []string{"nothing to change"}, "", "apps", "set", "shop")
	b.want(ExitOK, []string{"disabled false → true"}, "", "apps", "set", "shop", "--disabled", "true")
	b.want(ExitOK, []string{"(disabled)"}, "", "apps", "list")
	b.want(ExitOK, []string{"disabled true → false"}, "", "apps", "set", "shop", "--disabled", "false")
	if _, ok := b.item("shop")["disabled"]; ok {
		t.Errorf("--disabled false left the attribute")
	}

	// secret: a new version; no pause to end.
	b.sandbox(shopID, "new-"+secretFor("shop"), wechattest.OfficialAccount)
	b.want(ExitOK, []string{"Stored the new secret of shop", "(version 2", "published token stays valid"}, "new-"+secretFor("shop")+"\n", "apps", "secret", "shop")
	if b.secretParam("shop") != "new-"+secretFor("shop") {
		t.Errorf("the secret was not replaced")
	}

	// unblock of an app that is not paused.
	b.want(ExitOK, []string{"shop was not paused", "published (version 1)"}, "", "apps", "unblock", "shop")

	// remove --keep-secret, then remove what is left.
	b.want(ExitOK, []string{"Removed shop", "registration deleted, token deleted, state deleted", "The secret stays at"}, "", "apps", "remove", "shop", "--keep-secret")
	if b.item("shop") != nil || b.tokenParam("shop") != "" || b.stateItem("shop") != nil {
		t.Errorf("remove left the item, the token or the state")
	}
	if b.secretParam("shop") == "" {
		t.Errorf("--keep-secret deleted the secret")
	}
	b.want(ExitOK, []string{"registration was absent", "Secret deleted"}, "", "apps", "remove", "shop")
	if b.secretParam("shop") != "" {
		t.Errorf("remove kept the secret")
	}
	b.want(ExitNotFound, []string{`no app "shop" is registered`}, "", "apps", "remove", "shop")
	b.want(ExitOK, []string{"No apps are registered"}, "", "apps", "list")
}

// sameItem compares two items' attributes.
func sameItem(a, b map[string]ddbtypes.AttributeValue) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if fmt.Sprint(v) != fmt.Sprint(b[k]) {
			return false
		}
	}
	return true
}

// TestRefusals: every refused registration exits with its code, says why,
// and writes nothing.
func TestRefusals(t *testing.T) {
	b := newBed(t)
	b.sandbox(shopID, secretFor("shop"), wechattest.OfficialAccount)
	b.want(ExitOK, nil, secretFor("shop")+"\n", "apps", "add", "shop", "--appid", shopID, "--kind", "offiaccount", "--mode", "classic")
	b.sandbox(corpID, secretFor("corp"), wechattest.WeCom)
	b.want(ExitOK, []string{"wecom, wecom mode"}, secretFor("corp")+"\n", "apps", "add", "corp", "--appid", corpID, "--kind", "wecom")
	b.sandbox(mpID, secretFor("mp"), wechattest.MiniProgram)
	b.want(ExitOK, []string{"miniprogram, stable mode"}, secretFor("mp")+"\n", "apps", "add", "mp", "--appid", mpID, "--kind", "miniprogram", "--budget", "50")

	add := func(name string, extra ...string) []string {
		return append([]string{"apps", "add", name}, extra...)
	}
	oa := []string{"--appid", "wx00000000000000b2", "--kind", "offiaccount"}
	tests := []struct {
		name  string
		code  ExitCode
		says  []string
		stdin string
		args  []string
	}{
		{"bad name", ExitInvalid, []string{"the app name is not valid"}, "x\n", add("Shop!", oa...)},
		{"appid of the wrong shape", ExitInvalid, []string{`appid "wx1" does not look like a WeChat appid`}, "x\n", add("x", "--appid", "wx1", "--kind", "offiaccount")},
		{"corpid for a Mini Program", ExitInvalid, []string{"does not look like a WeChat appid"}, "x\n", add("x", "--appid", corpID, "--kind", "miniprogram")},
		{"appid for WeCom", ExitInvalid, []string{"does not look like a WeCom corpid"}, "x\n", add("x", "--appid", "wc00000000000000b2", "--kind", "wecom")},
		{"unknown kind", ExitInvalid, []string{`kind "fax"`}, "x\n", add("x", "--appid", shopID, "--kind", "fax")},
		{"stable WeCom", ExitInvalid, []string{"WeCom apps always use gettoken"}, "x\n", add("x", "--appid", "ww00000000000000b2", "--kind", "wecom", "--mode", "stable")},
		{"margin too large", ExitInvalid, []string{"refresh_margin_s 6000 is over 5400"}, "x\n", add("x", append(oa, "--mode", "classic", "--margin", "6000")...)},
		{"margin too small", ExitInvalid, []string{"refresh_margin_s 60 is under 300"}, "x\n", add("x", append(oa, "--mode", "classic", "--margin", "60")...)},
		{"budget too small", ExitInvalid, []string{"daily_budget 5 is under 24"}, "x\n", add("x", append(oa, "--budget", "5")...)},
		{"classic budget too large", ExitInvalid, []string{"daily_budget 2000 is over 1000 for classic"}, "x\n", add("x", append(oa, "--mode", "classic", "--budget", "2000")...)},
		{"duplicate appid", ExitInvalid, []string{"appid " + shopID + " is already registered as shop"}, "x\n", add("x", "--appid", shopID, "--kind", "miniprogram")},
		{"duplicate name", ExitInvalid, []string{"an app named shop is already registered"}, "x\n", add("shop", oa...)},
		{"secret on argv", ExitUsage, []string{"never taken on the command line"}, "", add("x", append(oa, "--secret", "s3cr3t-on-argv")...)},
		{"secret as an argument", ExitUsage, []string{"wrong number of arguments (2)", "Secrets are read from stdin only"}, "", add("x", append(oa, "s3cr3t-on-argv")...)},
		{"no secret on stdin", ExitUsage, []string{"no secret on stdin"}, "", add("x", oa...)},
		{"secret with spaces", ExitUsage, []string{"spaces or control characters"}, "s3cr3t on argv\n", add("x", oa...)},
		{"kind missing", ExitUsage, []string{"--appid and --kind are required"}, "x\n", add("x", "--appid", shopID)},
		{"secret on set's argv", ExitUsage, []string{"wxtoken apps secret NAME"}, "", []string{"apps", "set", "shop", "--secret", "s3cr3t-on-argv"}},
		{"secret on secret's argv", ExitUsage, []string{"never taken on the command line"}, "", []string{"apps", "secret", "shop", "--secret", "s3cr3t-on-argv"}},
		{"set the appid of another app", ExitInvalid, []string{"is already registered as shop"}, "", []string{"apps", "set", "mp", "--appid", shopID}},
		{"set a WeCom mode on a Mini Program", ExitInvalid, []string{`mode "wecom"`}, "", []string{"apps", "set", "mp", "--mode", "wecom"}},
		{"unknown app: show", ExitNotFound, []string{`no app "nope" is registered`}, "", []string{"apps", "show", "nope"}},
		{"unknown app: set", ExitNotFound, []string{`no app "nope"`}, "", []string{"apps", "set", "nope", "--budget", "300"}},
		{"unknown app: secret", ExitNotFound, []string{`no app "nope"`}, "x\n", []string{"apps", "secret", "nope"}},
		{"unknown app: unblock", ExitNotFound, []string{`no app "nope"`}, "", []string{"apps", "unblock", "nope"}},
		{"unknown app: remove", ExitNotFound, []string{`no app "nope"`}, "", []string{"apps", "remove", "nope"}},
		{"unknown app: token", ExitNotFound, []string{"no token is published for nope"}, "", []string{"token", "nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.t = t
			got, out, errOut := b.run(tt.stdin, tt.args...)
			if got != tt.code {
				t.Fatalf("exit %d, want %d; output:\n%s%s", got, tt.code, out, errOut)
			}
			for _, s := range tt.says {
				if !strings.Contains(out+errOut, s) {
					t.Errorf("output does not say %q:\n%s%s", s, out, errOut)
				}
			}
			if strings.Contains(out+errOut, "s3cr3t") {
				t.Errorf("the secret was echoed:\n%s%s", out, errOut)
			}
			if b.item("x") != nil || b.secretParam("x") != "" {
				t.Errorf("a refused registration wrote the item or the secret")
			}
		})
	}
	b.t = t
	// WeCom corpids may repeat: each application of a corp has its own secret.
	b.sandbox(corpID, secretFor("corp"), wechattest.WeCom)
	b.want(ExitOK, []string{"Registered corp2"}, secretFor("corp")+"\n", "apps", "add", "corp2", "--appid", corpID, "--kind", "wecom")
}

// TestWeChatRefusals: a refused first token exits 5 with what to do; doing it
// gets the token.
func TestWeChatRefusals(t *testing.T) {
	b := newBed(t)

	// 40164: the IP is not whitelisted.
	walledID := "wx00000000000000d1"
	b.sandbox(walledID, secretFor("walled"), wechattest.OfficialAccount, "203.0.113.9")
	b.want(ExitWeChat, []string{"WeChat refused (errcode 40164)", "from IP 127.0.0.1", "add 127.0.0.1 to the account's IP whitelist", "wxtoken apps unblock walled", "stays registered"},
		secretFor("walled")+"\n", "apps", "add", "walled", "--appid", walledID, "--kind", "offiaccount")
	b.want(ExitOK, []string{"walled", "config 40164", "UTC ("}, "", "apps", "list")
	b.want(ExitOK, []string{"PAUSED", "errcode 40164", "advice:", "add 127.0.0.1 to the account's IP whitelist"}, "", "apps", "show", "walled")
	b.sandbox(walledID, secretFor("walled"), wechattest.OfficialAccount, "203.0.113.9", "127.0.0.1") // whitelisted
	b.want(ExitOK, []string{"Ended the pause of walled", "after config 40164", "published (version 1)"}, "", "apps", "unblock", "walled")
	if st := b.stateItem("walled"); st["blocked_until"] != nil || st["lease_owner"] != nil {
		t.Errorf("unblock left blocked_until or its lease: %v", st)
	}

	// 40125: the secret is wrong; a new secret ends the pause at the next run.
	wrongSecretID := "wx00000000000000d2"
	b.sandbox(wrongSecretID, secretFor("wrongsecret"), wechattest.OfficialAccount)
	b.want(ExitWeChat, []string{"errcode 40125", "the AppSecret is wrong", "wxtoken apps secret wrongsecret < secret.txt", "ends by itself at the next scheduled run"},
		"wrong-"+secretFor("wrongsecret")+"\n", "apps", "add", "wrongsecret", "--appid", wrongSecretID, "--kind", "offiaccount")
	b.want(ExitOK, []string{"The pause caused by the wrong secret (errcode 40125) ends by itself at the next scheduled run", "no unblock needed"},
		secretFor("wrongsecret")+"\n", "apps", "secret", "wrongsecret")
	rep, err := b.stack.Refresher.RefreshDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.tokenParam("wrongsecret") == "" {
		t.Errorf("the next scheduled run did not fetch a token with the new secret: %+v", rep.Outcomes)
	}

	// 40013: the appid is wrong (WeChat does not know it); fix it with set.
	b.want(ExitWeChat, []string{"errcode 40013", "the appid (WeCom: corpid) is wrong", "wxtoken apps set wrongid --appid wx..."},
		secretFor("wrongid")+"\n", "apps", "add", "wrongid", "--appid", "wx00000000000000ee", "--kind", "miniprogram")
	rightID := "wx00000000000000d3"
	b.sandbox(rightID, secretFor("wrongid"), wechattest.MiniProgram)
	b.want(ExitOK, []string{"appid wx00000000000000ee → " + rightID, "apps unblock wrongid"}, "", "apps", "set", "wrongid", "--appid", rightID)
	b.want(ExitOK, []string{"Ended the pause", "published (version 1)"}, "", "apps", "unblock", "wrongid")

	// JSON for scripts: the advice and the errcode.
	jsonID := "wx00000000000000d4"
	b.sandbox(jsonID, secretFor("x"), wechattest.OfficialAccount, "203.0.113.9")
	out := b.want(ExitWeChat, nil, secretFor("x")+"\n", "apps", "add", "x", "--appid", jsonID, "--kind", "offiaccount", "--json")
	var got struct {
		App        appView     `json:"app"`
		FirstToken tokenReport `json:"first_token"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("add --json: %v\n%s", err, out)
	}
	if got.App.Name != "x" || got.FirstToken.OK || got.FirstToken.Errcode != 40164 || got.FirstToken.Advice == nil || !strings.Contains(got.FirstToken.Advice.Fix, "127.0.0.1") {
		t.Errorf("add --json: %+v", got)
	}
}

// TestDuplicateAppIDInTheSweep: two registrations of one account, written
// behind the command's back, are invalid for the scheduled run and the list.
// TestDuplicateAppIDInTheSweep: two classic-mode apps of one appid would
// supersede each other's tokens, so the sweep refuses both.
func TestDuplicateAppIDInTheSweep(t *testing.T) {
	b := newBed(t)
	for _, name := range []string{"one", "two"} {
		b.stack.Register(registry.App{Name: name, AppID: "wx00000000000000f1", Kind: registry.OfficialAccount, Mode: registry.Classic})
	}
	b.stack.Register(registry.App{Name: "three", AppID: "wx00000000000000f3", Kind: registry.OfficialAccount})
	rep, err := b.stack.Refresher.RefreshDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]refresh.RunStatus{}
	for _, o := range rep.Outcomes {
		status[o.App] = o.Status
	}
	if status["one"] != refresh.StatusInvalid || status["two"] != refresh.StatusInvalid || status["three"] != refresh.StatusRefreshed {
		t.Errorf("outcomes %v, want one and two invalid, three refreshed", status)
	}
	b.want(ExitOK, []string{"INVALID: appid wx00000000000000f1 is also registered as two", "INVALID: appid wx00000000000000f1 is also registered as one"}, "", "apps", "list")
	b.want(ExitOK, []string{"INVALID", "remove it"}, "", "apps", "show", "one")
}

// TestSetDisablesAnOlderRegistration: a registration an older wxtoken
// accepted (a short appid, a tiny budget), which the scheduled run still
// serves, can always be switched off and on again; any other change must
// bring it up to today's rules.
func TestSetDisablesAnOlderRegistration(t *testing.T) {
	b := newBed(t)
	b.stack.Register(registry.App{Name: "legacy", AppID: "wx1", Kind: registry.OfficialAccount, Mode: registry.Classic, DailyBudget: 5})
	b.want(ExitOK, []string{"Updated legacy: disabled false → true"}, "", "apps", "set", "legacy", "--disabled", "true")
	if v, _ := b.item("legacy")["disabled"].(*ddbtypes.AttributeValueMemberBOOL); v == nil || !v.Value {
		t.Errorf("disabled not stored: %v", b.item("legacy"))
	}
	b.want(ExitOK, []string{"Updated legacy"}, "", "apps", "set", "legacy", "--disabled", "false")
	b.want(ExitInvalid, []string{`appid "wx1" does not look like`}, "", "apps", "set", "legacy", "--budget", "300")
}

// pagedLogs answers FilterLogEvents with empty pages before the one that
// holds the failure line, as CloudWatch Logs does while it searches.
type pagedLogs struct{ calls int }

func (p *pagedLogs) FilterLogEvents(_ context.Context, in *cloudwatchlogs.FilterLogEventsInput, _ ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.FilterLogEventsOutput, error) {
	p.calls++
	page := 0
	if in.NextToken != nil {
		page, _ = strconv.Atoi(*in.NextToken)
	}
	if page < 3 {
		next := strconv.Itoa(page + 1)
		return &cloudwatchlogs.FilterLogEventsOutput{NextToken: &next}, nil
	}
	msg := `{"event":"refresh_failed","app":"shop","whitelist_ip":"203.0.113.9"}`
	ts := int64(1)
	return &cloudwatchlogs.FilterLogEventsOutput{Events: []cwltypes.FilteredLogEvent{{Message: &msg, Timestamp: &ts}}}, nil
}

func TestWhitelistIPFollowsEmptyPages(t *testing.T) {
	logs := &pagedLogs{}
	got := logGroupIPs{logs: logs, stack: "wxtoken", now: time.Now}.whitelistIP(context.Background(), "shop")
	if got != "203.0.113.9" {
		t.Errorf("whitelistIP = %q after %d calls, want the IP on the fourth page", got, logs.calls)
	}
}

// TestAdviceMatchesRunbook: the advice the command prints for an errcode
// prescribes the same wxtoken commands as the README's runbook row for it,
// and every errcode of the runbook has advice (and the other way round).
func TestAdviceMatchesRunbook(t *testing.T) {
	tables, err := runbook.Load("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inReadme := map[int]bool{}
	for _, row := range tables.Runbook {
		for _, code := range row.Errcodes {
			inReadme[code] = true
			if _, ok := advices[code]; !ok {
				t.Errorf("runbook row %q: errcode %d has no advice in advice.go", row.Label, code)
				continue
			}
			a := adviceFor(code, "NAME", "203.0.113.7")
			got := runbook.WxtokenVerbs(runbook.Commands(a.Fix, "wxtoken "), true)
			want := runbook.WxtokenVerbs(row.Commands, true)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("errcode %d: the advice prescribes %q (%s), the README's row %q prescribes %q", code, got, a.Fix, row.Label, want)
			}
		}
		if row.Label == "drift" {
			// Classic: the README's command; the other modes: none the
			// README does not give.
			want := runbook.WxtokenVerbs(row.Commands, true)
			for _, mode := range []registry.Mode{registry.Classic, registry.Stable, registry.GetToken} {
				got := runbook.WxtokenVerbs(runbook.Commands(driftAdvice("NAME", mode), "wxtoken "), true)
				if (mode == registry.Classic && !reflect.DeepEqual(got, want)) || (mode != registry.Classic && len(got) != 0) {
					t.Errorf("drift (%s): the advice prescribes %q, the README %q", mode, got, want)
				}
				if !strings.Contains(row.You, string(mode)) && !(mode == registry.GetToken && strings.Contains(row.You, "WeCom")) {
					t.Errorf("the README's drift row says nothing for %s mode: %s", mode, row.You)
				}
			}
		}
	}
	for code := range advices {
		if !inReadme[code] {
			t.Errorf("errcode %d has advice but no row in the README's runbook", code)
		}
	}
}

// TestClearQuotaCommand: apps clear-quota resets the account's daily counts
// with clear_quota/v2 and the stored secret (never printed), and says what
// to do when WeChat or the registration refuses.
func TestClearQuotaCommand(t *testing.T) {
	b := newBed(t)
	wx := []string{"--wechat-url", b.stack.Sandbox.URL}
	clear := func(code ExitCode, says []string, name string) {
		t.Helper()
		b.want(code, says, "", append(wx, "apps", "clear-quota", name)...)
	}
	b.sandbox(shopID, secretFor("shop"), wechattest.OfficialAccount)
	b.want(ExitOK, nil, secretFor("shop")+"\n", "apps", "add", "shop", "--appid", shopID, "--kind", "offiaccount", "--mode", "classic")
	clear(ExitOK, []string{"Cleared the daily API call counts of shop's account " + shopID, "wxtoken apps unblock shop"}, "shop")
	if n := b.stack.Sandbox.Calls(wechattest.PathClearQuotaV2, shopID); n != 1 {
		t.Errorf("%d clear_quota/v2 calls, want 1", n)
	}

	tests := []struct {
		name  string
		fault int
		code  ExitCode
		says  string
	}{
		{"the month's resets used up", 48006, ExitWeChat, "errcode 48006): the account's 10 quota resets of this month are used up"},
		{"the IP not whitelisted", 40164, ExitWeChat, "refused the call from your IP"},
		{"an appid WeChat does not know", 40013, ExitWeChat, "wxtoken apps set shop --appid"},
		{"an errcode without advice", 12345, ExitWeChat, "errcode 12345): see WeChat's clear_quota/v2 documentation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.stack.Sandbox.Inject(wechattest.Fault{Path: wechattest.PathClearQuotaV2, ErrCode: tt.fault, Times: 1})
			clear(tt.code, []string{tt.says}, "shop")
		})
	}

	b.sandbox(corpID, secretFor("corp"), wechattest.WeCom)
	b.want(ExitOK, nil, secretFor("corp")+"\n", "apps", "add", "corp", "--appid", corpID, "--kind", "wecom")
	clear(ExitInvalid, []string{"corp is a WeCom app"}, "corp")
	clear(ExitNotFound, []string{"no app \"nobody\" is registered"}, "nobody")
	b.want(ExitOK, nil, "", "apps", "remove", "shop", "--keep-secret")
	b.want(ExitOK, nil, secretFor("shop")+"\n", "apps", "add", "shop", "--appid", shopID, "--kind", "offiaccount", "--mode", "classic")
	if _, err := b.ssm.DeleteParameter(context.Background(), &ssm.DeleteParameterInput{Name: aws.String(b.stack.Prefix + "/shop/secret")}); err != nil {
		t.Fatal(err)
	}
	clear(ExitNotFound, []string{"no secret is stored for shop", "wxtoken apps secret shop"}, "shop")
}

// TestTicketsCommand: --tickets on add and set, validated for the kind;
// show describes each ticket's state (never the ticket).
func TestTicketsCommand(t *testing.T) {
	b := newBed(t)
	b.sandbox(shopID, secretFor("shop"), wechattest.OfficialAccount)
	b.want(ExitOK, []string{"tickets jsapi,wx_card"}, secretFor("shop")+"\n",
		"apps", "add", "shop", "--appid", shopID, "--kind", "offiaccount", "--tickets", "wx_card, jsapi")
	if ss, ok := b.item("shop")["tickets"].(*ddbtypes.AttributeValueMemberSS); !ok || strings.Join(ss.Value, ",") != "jsapi,wx_card" {
		t.Fatalf("the item's tickets: %v", b.item("shop")["tickets"])
	}
	if _, err := b.stack.Refresher.RefreshDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := b.want(ExitOK, nil, "", "apps", "show", "shop", "--json")
	var v appView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	if len(v.TicketStates) != 2 || v.TicketStates[0].Ticket != "jsapi" || !v.TicketStates[0].Published || v.TicketStates[0].Version != 1 ||
		!strings.HasSuffix(v.TicketStates[1].Parameter, "/shop/wx_card_ticket") || v.TicketStates[1].ExpiresAt == nil {
		t.Errorf("ticket states %+v, want jsapi and wx_card published", v.TicketStates)
	}
	ticket := b.param(b.stack.Prefix + "/shop/jsapi_ticket")
	b.tokens = append(b.tokens, ticket)
	b.want(ExitOK, []string{"ticket jsapi:", "/shop/jsapi_ticket version 1", "ticket wx_card:"}, "", "apps", "show", "shop")
	// list shows each ticket on a row of its own, by the name the metrics
	// and the schedule's log give it (the near-expiry alarm's first look).
	list := b.want(ExitOK, []string{"shop#jsapi", "shop#wx_card"}, "", "apps", "list")
	for _, row := range strings.Split(list, "\n") {
		if f := strings.Fields(row); len(f) > 4 && strings.HasPrefix(f[0], "shop#") && (f[1] != "ticket" || f[3] != "2h00m" || f[4] != "1/100") {
			t.Errorf("ticket row %q: want kind ticket, expiring in 2h00m, 1 of 100 calls today", row)
		}
	}
	var listed struct{ Apps []appView }
	if err := json.Unmarshal([]byte(b.want(ExitOK, nil, "", "apps", "list", "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Apps) != 1 || len(listed.Apps[0].TicketRows) != 2 || listed.Apps[0].TicketRows[0].Name != "shop#jsapi" || listed.Apps[0].TicketRows[0].ExpiresAt == nil {
		t.Errorf("list --json: %+v, want shop with its two ticket rows", listed.Apps)
	}
	// A second registration of the account (stable mode allows it) that
	// keeps the account's jsapi ticket too: its ticket row is invalid.
	twin := registry.App{Name: "twin", AppID: shopID, Kind: registry.OfficialAccount, Mode: registry.Stable, Tickets: registry.TicketSetOf(registry.TicketJSAPI)}
	if _, err := b.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(b.stack.Table), Item: registry.Item(twin)}); err != nil {
		t.Fatal(err)
	}
	b.want(ExitOK, []string{"twin#jsapi", "INVALID: tickets: shop also registers account"}, "", "apps", "list")
	if _, err := b.db.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(b.stack.Table), Key: appKey("twin")}); err != nil {
		t.Fatal(err)
	}

	// A ticket paused after a configuration error: list names it, and
	// unblock ends its pause with the token's.
	b.stack.Sandbox.Clock().Advance(100 * time.Minute) // the tickets are due (20 min margin), the stable token is not
	b.stack.Sandbox.Inject(wechattest.Fault{Path: wechattest.PathTicket, ErrCode: 40164, ErrMsg: "invalid ip 127.0.0.1, not in whitelist"})
	if _, err := b.stack.Refresher.RefreshDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.stack.Sandbox.ClearFaults()
	b.want(ExitOK, []string{"shop#jsapi", "config 40164"}, "", "apps", "list")
	if st := b.stateItem("shop#jsapi"); st == nil || st["blocked_until"] == nil {
		t.Fatalf("the ticket was not paused after 40164: %v", st)
	}
	b.want(ExitOK, []string{"Ended the pause of shop's jsapi ticket", "Ended the pause of shop's wx_card ticket"}, "", "apps", "unblock", "shop")
	if st := b.stateItem("shop#jsapi"); st == nil || st["blocked_until"] != nil {
		t.Errorf("unblock left the ticket's pause: %v", st)
	}
	b.want(ExitInvalid, []string{`"agent_config" is not a ticket of an Official Account`}, "", "apps", "set", "shop", "--tickets", "agent_config")
	b.want(ExitOK, []string{"tickets jsapi,wx_card → none"}, "", "apps", "set", "shop", "--tickets", "none")
	if _, ok := b.item("shop")["tickets"]; ok {
		t.Error("--tickets none left the tickets attribute")
	}
	b.want(ExitOK, []string{"tickets none → jsapi"}, "", "apps", "set", "shop", "--tickets", "jsapi")

	b.sandbox(mpID, secretFor("mp"), wechattest.MiniProgram)
	b.want(ExitInvalid, []string{"a Mini Program (miniprogram) has no tickets"}, secretFor("mp")+"\n",
		"apps", "add", "mp", "--appid", mpID, "--kind", "miniprogram", "--tickets", "jsapi")
	if b.item("mp") != nil {
		t.Error("a refused registration was written")
	}
}

// TestAdviceByClass: WeCom's 45009 (class hour_quota) is a frequency limit
// that ends with the hour, so its advice prescribes no clear-quota (which
// WeCom does not have), unlike WeChat's daily quota.
func TestAdviceByClass(t *testing.T) {
	wecom := adviceOf(string(refresh.ClassHourQuota), 45009, "corp", "")
	daily := adviceOf(string(refresh.ClassDailyQuota), 45009, "shop", "")
	if strings.Contains(wecom.Fix, "clear-quota") || !strings.Contains(wecom.Problem, "frequency limit") {
		t.Errorf("WeCom's 45009: %+v, want the frequency limit and no clear-quota", wecom)
	}
	if !strings.Contains(daily.Fix, "clear-quota") {
		t.Errorf("WeChat's daily quota: %+v, want clear-quota", daily)
	}
}

// TestRemoveDeletesTicketsAndMeta: apps remove deletes, under each
// credential's lease, the token's and every ticket's parameter, their
// rotation meta and their state.
func TestRemoveDeletesTicketsAndMeta(t *testing.T) {
	b := newBed(t)
	b.sandbox(shopID, secretFor("shop"), wechattest.OfficialAccount)
	b.want(ExitOK, nil, secretFor("shop")+"\n", "apps", "add", "shop", "--appid", shopID, "--kind", "offiaccount", "--tickets", "jsapi,wx_card")
	if _, err := b.stack.Refresher.RefreshDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, leaf := range []string{"access_token", "jsapi_ticket", "wx_card_ticket"} {
		names = append(names, b.stack.Prefix+"/shop/"+leaf, rotation.Name(b.stack.Prefix+"/shop/"+leaf))
	}
	for _, n := range names {
		if v := b.param(n); v == "" {
			t.Fatalf("%s is not published; the test needs it", n)
		} else if !strings.HasSuffix(n, rotation.Suffix) {
			b.tokens = append(b.tokens, v)
		}
	}
	b.want(ExitOK, []string{"Removed shop"}, "", "apps", "remove", "shop")
	for _, n := range names {
		if b.param(n) != "" {
			t.Errorf("%s is left after apps remove", n)
		}
	}
	for _, key := range []string{"shop", "shop#jsapi", "shop#wx_card"} {
		if st := b.stateItem(key); st != nil {
			t.Errorf("the state of %s is left after apps remove: %v", key, st)
		}
	}
}
