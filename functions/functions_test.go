// Package functions_test runs the two Lambda entry points end to end: the
// built `bootstrap` binaries as processes under the Lambda Runtime API
// stand-in of pkg/testsupport/lambdatest, against DynamoDB Local, moto and the WeChat
// sandbox, fed by every sample in events/.
package functions_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awscalls"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/lambdatest"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const (
	scheduledPkg = "github.com/wxtoken/wxtoken/functions/scheduled-refresh"
	apiPkg       = "github.com/wxtoken/wxtoken/functions/refresh-api"
	appID        = "wxdemo0000000001"
	secret       = "e2e-secret-0123456789abcdefghijkl"
)

// stack is one test's deployment: a table, a parameter prefix, the sandbox
// with the app "demo" registered, and the environment the functions get.
type stack struct {
	t     *testing.T
	cfg   aws.Config
	sb    *wechattest.Server
	store *tokenstore.Store
	env   []string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	cfg := awstest.Config(t, awstest.DynamoDB, awstest.SSM)
	sb := wechattest.NewServer(wechattest.Config{})
	t.Cleanup(sb.Close)
	sb.AddApp(wechattest.App{AppID: appID, Secret: secret, Kind: wechattest.OfficialAccount})
	table := awstest.Table(t, cfg)
	prefix := "/" + awstest.Name(t, "e2e")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ssm.NewFromConfig(cfg).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(prefix + "/demo/secret"), Value: aws.String(secret),
		Type: ssmtypes.ParameterTypeSecureString,
	}); err != nil {
		t.Fatalf("put secret: %v", err)
	}
	app := registry.App{Name: "demo", AppID: appID, Kind: registry.OfficialAccount, Mode: registry.Stable}
	if _, err := dynamodb.NewFromConfig(cfg).PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: registry.Item(app)}); err != nil {
		t.Fatalf("register demo: %v", err)
	}
	return &stack{
		t: t, cfg: cfg, sb: sb,
		store: tokenstore.New(ssm.NewFromConfig(cfg), prefix, ""),
		env: []string{
			"WXTOKEN_TABLE=" + table,
			"WXTOKEN_PARAMETER_PREFIX=" + prefix,
			"WXTOKEN_WECHAT_BASE_URLS=" + sb.URL,
			"WXTOKEN_WECOM_BASE_URLS=" + sb.URL,
			"WXTOKEN_SERVICE=e2e",
			"WXTOKEN_LOG_LEVEL=debug",
		},
	}
}

// published returns the token in SSM and its Version.
func (s *stack) published(t *testing.T) (string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, v, err := s.store.Get(ctx, "demo")
	if err != nil {
		t.Fatalf("read the published token: %v", err)
	}
	return tok, v
}

// noSecrets fails the test if a process's output holds the secret or any
// token the sandbox issued.
func (s *stack) noSecrets(name, output string) {
	s.t.Helper()
	for _, v := range append(s.sb.Issued(), secret) {
		if strings.Contains(output, v) {
			s.t.Errorf("%s's output holds a token or the secret (fingerprint %s)", name, wechat.Fingerprint(v))
		}
	}
}

// signAs is env plus the credentials of the function identity id, so that
// the test bed records the function's AWS calls as made by its role and the
// IAM check evaluates them against it (pkg/testsupport/awscalls).
func signAs(id awscalls.Identity, env []string) []string {
	return append(append([]string(nil), env...), "AWS_ACCESS_KEY_ID="+string(id), "AWS_SECRET_ACCESS_KEY=test")
}

func event(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Function timeouts of template.yaml (infra/local/check_template.py keeps
// them under the 60 s lease): invocations here get the same deadlines.
const (
	scheduledTimeout = 50 * time.Second
	apiTimeout       = 25 * time.Second
)

func invoke(t *testing.T, rt *lambdatest.Runtime, proc *lambdatest.Process, payload []byte, timeout time.Duration) lambdatest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := rt.Invoke(ctx, payload)
	if err != nil {
		t.Fatalf("invoke: %v\nprocess output:\n%s", err, proc.Output())
	}
	return res
}

// decodeAnswer reads the API function's answer to an invocation: the API
// Gateway payload and its JSON body. A function error fails t: the API
// answers every request.
func decodeAnswer(t *testing.T, res lambdatest.Result, proc *lambdatest.Process) (httpAnswer, map[string]any) {
	t.Helper()
	if res.Error != nil {
		t.Fatalf("function error %v (the API answers every request)\n%s", res.Error, proc.Output())
	}
	var ans httpAnswer
	if err := json.Unmarshal(res.Payload, &ans); err != nil {
		t.Fatalf("answer %s: %v", res.Payload, err)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(ans.Body), &body); err != nil {
		t.Fatalf("body %q: %v", ans.Body, err)
	}
	return ans, body
}

type httpAnswer struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
}

func TestEndToEnd(t *testing.T) {
	s := newStack(t)
	schedBin, apiBin := lambdatest.Build(t, scheduledPkg), lambdatest.Build(t, apiPkg)
	used := map[string]bool{}

	// The schedule publishes a token.
	rt := lambdatest.NewRuntime()
	t.Cleanup(rt.Close)
	sched := rt.Start(t, schedBin, signAs(awscalls.Scheduled, s.env)...)
	var summary struct {
		Apps           int            `json:"apps"`
		Counts         map[string]int `json:"counts"`
		NeedsAttention []any          `json:"needs_attention"`
	}
	t.Run("schedule publishes a token", func(t *testing.T) {
		used["schedule.json"] = true
		res := invoke(t, rt, sched, event(t, "schedule.json"), scheduledTimeout)
		if res.Error != nil {
			t.Fatalf("function error: %v\n%s", res.Error, sched.Output())
		}
		if err := json.Unmarshal(res.Payload, &summary); err != nil {
			t.Fatalf("summary %s: %v", res.Payload, err)
		}
		if summary.Apps != 1 || summary.Counts["refreshed"] != 1 || len(summary.NeedsAttention) != 0 {
			t.Errorf("summary %s, want one app refreshed and none needing attention", res.Payload)
		}
		tok, v := s.published(t)
		if v != 1 || s.sb.Check(tok) != 0 {
			t.Errorf("published version %d, sandbox check errcode %d; want version 1 and a token WeChat accepts", v, s.sb.Check(tok))
		}
		if n := s.sb.TokenCalls(appID); n != 1 {
			t.Errorf("WeChat token calls = %d, want 1", n)
		}
		if !strings.Contains(sched.Output(), `"TokenRemainingLife"`) || !strings.Contains(sched.Output(), `"CloudWatchMetrics"`) {
			t.Errorf("no EMF TokenRemainingLife metric in the output:\n%s", sched.Output())
		}
	})
	t.Run("a second run finds nothing due", func(t *testing.T) {
		used["schedule-manual.json"] = true
		res := invoke(t, rt, sched, event(t, "schedule-manual.json"), scheduledTimeout)
		if res.Error != nil {
			t.Fatalf("function error: %v", res.Error)
		}
		if err := json.Unmarshal(res.Payload, &summary); err != nil || summary.Counts["not_due"] != 1 {
			t.Errorf("summary %s, want the app not due", res.Payload)
		}
		if n := s.sb.TokenCalls(appID); n != 1 {
			t.Errorf("WeChat token calls = %d, want still 1", n)
		}
	})
	t.Run("a malformed schedule event is an error, not a crash", func(t *testing.T) {
		used["schedule-malformed.json"] = true
		res := invoke(t, rt, sched, event(t, "schedule-malformed.json"), scheduledTimeout)
		if res.Error == nil || !strings.Contains(res.Error.Message, "not a JSON object") {
			t.Errorf("result %+v, want a function error saying the event is not an object", res)
		}
		res = invoke(t, rt, sched, event(t, "schedule-manual.json"), scheduledTimeout)
		if res.Error != nil {
			t.Errorf("the process did not survive: %v", res.Error)
		}
	})

	// The API serves it, refreshes on force, and rejects bad requests.
	art := lambdatest.NewRuntime()
	t.Cleanup(art.Close)
	apiProc := art.Start(t, apiBin, signAs(awscalls.API, s.env)...)
	first, _ := s.published(t)
	steps := []struct {
		file   string
		status int
		check  func(t *testing.T, body map[string]any, headers map[string]string)
	}{
		{"api-refresh.json", 200, func(t *testing.T, body map[string]any, _ map[string]string) {
			// The sample's stale token is not the published one: no WeChat call.
			if body["access_token"] != first || body["refreshed"] != true || body["version"] != float64(1) {
				t.Errorf("body %v, want the published token, version 1, refreshed", body)
			}
		}},
		{"api-refresh-base64.json", 200, func(t *testing.T, body map[string]any, _ map[string]string) {
			if body["access_token"] != first {
				t.Errorf("body %v, want the published token", body)
			}
		}},
		{"api-refresh-no-body.json", 200, func(t *testing.T, body map[string]any, _ map[string]string) {
			if body["access_token"] != first || body["refreshed"] != false || body["expires_at"] == nil {
				t.Errorf("body %v, want the published token, not refreshed, with its expiry", body)
			}
		}},
		{"api-status.json", 200, func(t *testing.T, body map[string]any, _ map[string]string) {
			if body["published"] != true || body["version"] != float64(1) || body["generation"] != float64(1) || body["access_token"] != nil {
				t.Errorf("status %v, want published version 1, generation 1, no token", body)
			}
		}},
		{"api-force-refresh.json", 200, func(t *testing.T, body map[string]any, _ map[string]string) {
			tok, v := s.published(t)
			if body["access_token"] != tok || tok == first || v != 2 || s.sb.Check(tok) != 0 {
				t.Errorf("force-refresh answered version %v; SSM holds version %d; want a new token, version 2, published and valid", body["version"], v)
			}
		}},
		{"api-force-refresh.json", 429, func(t *testing.T, body map[string]any, headers map[string]string) {
			// A second force inside the app's minimum interval (60 s by
			// default) is refused, with the current token and Retry-After.
			tok, _ := s.published(t)
			e, _ := body["error"].(map[string]any)
			if e["code"] != "refresh_refused" || body["access_token"] != tok || headers["Retry-After"] == "" {
				t.Errorf("answer %v (Retry-After %q), want refresh_refused with the current token and Retry-After", e, headers["Retry-After"])
			}
		}},
		{"api-refresh-malformed-json.json", 400, nil},
		{"api-refresh-unknown-field.json", 400, nil},
		{"api-refresh-wrong-type.json", 400, nil},
		{"api-refresh-oversized.json", 400, nil},
		{"api-refresh-invalid-app.json", 400, nil},
		{"api-force-refresh-with-body.json", 400, nil},
		{"api-not-an-http-event.json", 400, nil},
		{"api-refresh-unknown-app.json", 404, nil},
		{"api-status-unknown-app.json", 404, nil},
		// The ticket route reaches the handler (demo keeps no ticket here;
		// pkg/refresh and make dev test tickets end to end).
		{"api-ticket-refresh.json", 404, func(t *testing.T, body map[string]any, _ map[string]string) {
			if e, _ := body["error"].(map[string]any); e["code"] != "unknown_ticket" {
				t.Errorf("error %v, want unknown_ticket", body["error"])
			}
		}},
	}
	for _, st := range steps {
		t.Run(st.file, func(t *testing.T) {
			used[st.file] = true
			ans, body := decodeAnswer(t, invoke(t, art, apiProc, event(t, st.file), apiTimeout), apiProc)
			if ans.StatusCode != st.status {
				t.Fatalf("status %d, want %d: %s", ans.StatusCode, st.status, ans.Body)
			}
			if st.check != nil {
				st.check(t, body, ans.Headers)
			}
		})
	}
	if n := s.sb.TokenCalls(appID); n != 2 {
		t.Errorf("WeChat token calls = %d, want 2 (the schedule's and the forced one)", n)
	}
	t.Run("the audit log names the IAM caller", func(t *testing.T) {
		if !strings.Contains(apiProc.Output(), `"arn":"arn:aws:sts::123456789012:assumed-role/shop-backend/i-0123456789abcdef0"`) {
			t.Errorf("no audit line with the caller's ARN:\n%s", apiProc.Output())
		}
	})

	t.Run("every sample event is exercised", func(t *testing.T) {
		files, _ := filepath.Glob("../events/*.json")
		var missed []string
		for _, f := range files {
			if !used[filepath.Base(f)] {
				missed = append(missed, filepath.Base(f))
			}
		}
		sort.Strings(missed)
		if len(missed) > 0 || len(files) == 0 {
			t.Errorf("events not exercised end to end: %v", missed)
		}
	})
	if os.Getenv("E2E_DUMP") != "" {
		t.Logf("SCHED:\n%s\nAPI:\n%s", sched.Output(), apiProc.Output())
	}
	t.Run("no token or secret in any output", func(t *testing.T) {
		s.noSecrets("scheduled-refresh", sched.Output())
		s.noSecrets("refresh-api", apiProc.Output())
	})
}

func TestMissingConfigurationFailsColdStart(t *testing.T) {
	tests := []struct {
		name string
		pkg  string
		env  []string
		want []string
	}{
		{"no table", apiPkg, []string{"WXTOKEN_TABLE="}, []string{"WXTOKEN_TABLE", "not set"}},
		{"bad prefix and lease", scheduledPkg, []string{"WXTOKEN_TABLE=t-1", "WXTOKEN_PARAMETER_PREFIX=wechat/", "WXTOKEN_LEASE_SECONDS=abc"},
			[]string{"WXTOKEN_PARAMETER_PREFIX", "WXTOKEN_LEASE_SECONDS"}},
		{"plain http to WeChat", apiPkg, []string{"WXTOKEN_TABLE=t-1", "WXTOKEN_WECHAT_BASE_URLS=http://api.weixin.qq.com"},
			[]string{"WXTOKEN_WECHAT_BASE_URLS", "loopback"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bin := lambdatest.Build(t, tt.pkg)
			rt := lambdatest.NewRuntime()
			defer rt.Close()
			proc := rt.Start(t, bin, tt.env...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := proc.Wait(ctx); err == nil || ctx.Err() != nil {
				t.Fatalf("process ended with %v, want exit status 1\n%s", err, proc.Output())
			}
			ie := rt.InitError()
			if ie == nil {
				t.Fatalf("no init error reported to the Runtime API\n%s", proc.Output())
			}
			if ie.Type != "Runtime.InitError" {
				t.Errorf("init error type %q, want Runtime.InitError", ie.Type)
			}
			for _, w := range tt.want {
				if !strings.Contains(ie.Message, w) || !strings.Contains(proc.Output(), w) {
					t.Errorf("init error %q (and the log) should mention %q\n%s", ie.Message, w, proc.Output())
				}
			}
		})
	}
}
