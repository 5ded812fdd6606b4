package consumers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// pyProc is a Python program the test talks to: one command a line on its
// stdin, one JSON line back on its stdout (the test's own channel: values
// may be tokens, so failures print fingerprints only).
type pyProc struct {
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr *bytes.Buffer
	cancel context.CancelFunc
}

// pyEnv is the environment of a Python subprocess: the stack's credentials
// and region (as TestSnippets passes them), plus extra.
func pyEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_PROFILE=") && !strings.HasPrefix(kv, "PYTHONPATH=") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"AWS_ACCESS_KEY_ID="+stacktest.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+stacktest.SecretAccessKey,
		"AWS_SESSION_TOKEN=", "AWS_REGION="+stacktest.Region, "AWS_DEFAULT_REGION="+stacktest.Region,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "PYTHONDONTWRITEBYTECODE=1")
	return append(env, extra...)
}

// startPy starts argv with env; it is sent "quit" and waited for when t ends.
func startPy(t *testing.T, env []string, argv ...string) *pyProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	p := &pyProc{stderr: &bytes.Buffer{}, cancel: cancel}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.lines = bufio.NewScanner(out)
	t.Cleanup(func() {
		_, _ = io.WriteString(p.stdin, "quit\n")
		_ = p.stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s: %v\nstderr:\n%s", filepath.Base(argv[1]), err, p.stderr)
		}
		cancel()
	})
	return p
}

// do sends one command and decodes the answer into v.
func (p *pyProc) do(t *testing.T, cmd string, v any) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", cmd, err, p.stderr)
	}
	if !p.lines.Scan() {
		t.Fatalf("%s: no answer (%v)\nstderr:\n%s", cmd, p.lines.Err(), p.stderr)
	}
	if err := json.Unmarshal(p.lines.Bytes(), v); err != nil {
		t.Fatalf("%s: answer %d bytes: %v", cmd, len(p.lines.Bytes()), err)
	}
}

// readRuleProgram imports the README's Python snippet (written as
// consumer.py into a folder of its own, so it runs as copied) with its clock
// replaced, counts every SSM request its boto3 client sends, and answers:
//
//	at SECONDS     set the clock (Unix seconds)
//	get            {"value": get_token(...), "ssm": SSM requests so far}
//	refresh STALE  {"value": refresh(..., STALE), "ssm": ...}
const readRuleProgram = `
import json, sys
import consumer
api_url, app, prefix = sys.argv[1:4]
now, ssm = [0.0], [0]
consumer.clock = lambda: now[0]
def count(**kwargs):
    ssm[0] += 1
consumer._aws(api_url)[1].meta.events.register("before-call.ssm", count)
for line in sys.stdin:
    cmd, *args = line.split()
    out = {}
    try:
        if cmd == "quit":
            break
        elif cmd == "at":
            now[0] = float(args[0])
        elif cmd == "get":
            out["value"] = consumer.get_token(api_url, app, prefix)
        elif cmd == "refresh":
            out["value"] = consumer.refresh(api_url, app, args[0], prefix)
    except Exception as err:
        out["error"] = type(err).__name__
    out["ssm"] = ssm[0]
    print(json.dumps(out), flush=True)
`

// TestPythonSnippetReadRule shows that the README's Python snippet reads
// the token only when something can have changed (the consumer rule):
// once per planned rotation while the published schedule (the _meta
// parameter, read in the same GetParameters request) describes the value it
// read, once a minute without one, and through the API, honouring
// Retry-After, when the value is about to expire or WeChat rejected it.
func TestPythonSnippetReadRule(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	python := tool(t, filepath.Join(repo, ".cache", "venv", "bin", "python"), "the Python venv with boto3")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "consumer.py"), []byte(snippet(t, "consumer.py")), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "readrule.py")
	if err := os.WriteFile(prog, []byte(readRuleProgram), 0o644); err != nil {
		t.Fatal(err)
	}

	const appID = "wxreadrule000001"
	st := stacktest.New(t, stacktest.Options{}, registry.App{Name: "shop", AppID: appID, Kind: registry.OfficialAccount, Mode: registry.Classic})
	published := st.Publish("shop")
	_, version := st.Published("shop")
	params := ssm.NewFromConfig(st.Cfg)
	metaName := st.Prefix + "/shop/access_token_meta"
	// setMeta publishes a schedule as wxtoken does; nil removes it.
	setMeta := func(t *testing.T, meta map[string]any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if meta == nil {
			_, err := params.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(metaName)})
			var missing *ssmtypes.ParameterNotFound
			if err != nil && !errors.As(err, &missing) {
				t.Fatal(err)
			}
			return
		}
		b, _ := json.Marshal(meta)
		if _, err := params.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(metaName), Value: aws.String(string(b)),
			Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Truncate(time.Second)
	at := func(d time.Duration) string { return fmt.Sprintf("at %d", t0.Add(d).Unix()) }
	rfc := func(d time.Duration) string { return t0.Add(d).UTC().Format(time.RFC3339) }

	py := startPy(t, pyEnv(), python, prog, st.APIURL, "shop", st.Prefix)
	type answer struct {
		Value, Error string
		SSM          int
	}
	// step sets the clock, sends cmd and checks how many SSM and API
	// requests it cost.
	step := func(t *testing.T, d time.Duration, cmd string, wantSSM, wantAPI int) answer {
		t.Helper()
		var got answer
		py.do(t, at(d), &got)
		ssm0, api0 := got.SSM, st.Requests.Load()
		py.do(t, cmd, &got)
		if got.Error != "" {
			t.Fatalf("%s at %v: %s\nstderr:\n%s", strings.Fields(cmd)[0], d, got.Error, py.stderr)
		}
		if n, m := got.SSM-ssm0, int(st.Requests.Load()-api0); n != wantSSM || m != wantAPI {
			t.Errorf("%s at %v: %d SSM requests and %d API requests, want %d and %d", strings.Fields(cmd)[0], d, n, m, wantSSM, wantAPI)
		}
		return got
	}

	t.Run("no schedule: a minute", func(t *testing.T) {
		setMeta(t, nil)
		if got := step(t, 0, "get", 1, 0); got.Value != published {
			t.Errorf("read fp %s, want the published fp %s", wechat.Fingerprint(got.Value), wechat.Fingerprint(published))
		}
		step(t, 30*time.Second, "get", 0, 0)
		step(t, 59*time.Second, "get", 0, 0)
		step(t, 61*time.Second, "get", 1, 0)
	})
	t.Run("a schedule of another version: a minute", func(t *testing.T) {
		setMeta(t, map[string]any{"version": version + 1, "rotates_at": rfc(time.Hour), "expires_at": rfc(2 * time.Hour)})
		step(t, 3*time.Minute, "get", 1, 0)
		step(t, 3*time.Minute+59*time.Second, "get", 0, 0)
		step(t, 4*time.Minute+time.Second, "get", 1, 0)
	})
	t.Run("a malformed schedule: a minute", func(t *testing.T) {
		setMeta(t, map[string]any{"version": version, "rotates_at": "soon"})
		step(t, 6*time.Minute, "get", 1, 0)
		step(t, 7*time.Minute+time.Second, "get", 1, 0)
	})
	t.Run("its schedule: until just after the planned rotation", func(t *testing.T) {
		rotates := time.Hour
		setMeta(t, map[string]any{"version": version, "rotates_at": rfc(rotates), "expires_at": rfc(2 * time.Hour)})
		step(t, 10*time.Minute, "get", 1, 0)
		for _, d := range []time.Duration{11 * time.Minute, 30 * time.Minute, rotates, rotates + 59*time.Second} {
			step(t, d, "get", 0, 0)
		}
		// Past rotates_at + 60 s + the jitter (at most 60 s): read again.
		// The rotation is late (the same value, rotates_at passed): a minute.
		step(t, rotates+121*time.Second, "get", 1, 0)
		step(t, rotates+180*time.Second, "get", 0, 0)
		step(t, rotates+182*time.Second, "get", 1, 0)
	})
	t.Run("never past 120 s before the expiry", func(t *testing.T) {
		base := 2 * time.Hour
		setMeta(t, map[string]any{"version": version, "rotates_at": rfc(base + time.Hour), "expires_at": rfc(base + 30*time.Minute)})
		step(t, base, "get", 1, 0)
		step(t, base+27*time.Minute, "get", 0, 0)
		// 119 s before the expiry: the schedule is stuck; the API is asked
		// (no stale value), and its answer is kept at least a minute.
		got := step(t, base+28*time.Minute+time.Second, "get", 1, 1)
		if now, _ := st.Published("shop"); got.Value != now {
			t.Errorf("near expiry: got fp %s, want the API's answer, the published fp %s", wechat.Fingerprint(got.Value), wechat.Fingerprint(now))
		}
		step(t, base+29*time.Minute, "get", 0, 0)
	})
	t.Run("rejected: the API's answer, and Retry-After on 429", func(t *testing.T) {
		setMeta(t, nil)
		base := 4 * time.Hour
		old := step(t, base, "get", 1, 0).Value
		st.Sandbox.Clock().Advance(2 * time.Minute) // past the minimum interval between on-demand refreshes
		st.Sandbox.Revoke(appID)
		fresh := step(t, base+time.Second, "refresh "+old, 0, 1).Value
		if now, _ := st.Published("shop"); fresh == old || fresh != now {
			t.Fatalf("refresh answered fp %s; before %s, published now %s", wechat.Fingerprint(fresh), wechat.Fingerprint(old), wechat.Fingerprint(now))
		}
		// The answer is cached: no read for it.
		if got := step(t, base+2*time.Second, "get", 0, 0); got.Value != fresh {
			t.Errorf("get after refresh: fp %s, want the API's fp %s", wechat.Fingerprint(got.Value), wechat.Fingerprint(fresh))
		}
		// Rejected again within the minimum interval: 429 with the current
		// token, which is kept; a second refresh waits for Retry-After.
		st.Sandbox.Revoke(appID)
		if got := step(t, base+3*time.Second, "refresh "+fresh, 0, 1); got.Value != fresh {
			t.Errorf("429: got fp %s, want the answer's (current) fp %s", wechat.Fingerprint(got.Value), wechat.Fingerprint(fresh))
		}
		step(t, base+4*time.Second, "refresh "+fresh, 0, 0)
		step(t, base+5*time.Second, "get", 0, 0)
	})
	if n := st.BadSignatures.Load(); n != 0 {
		t.Errorf("%d of the snippet's requests failed the SigV4 check", n)
	}
}
