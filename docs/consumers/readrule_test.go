package consumers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

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
	// setMeta publishes a schedule as wxtoken does; nil removes it.
	setMeta := func(t *testing.T, meta map[string]any) {
		t.Helper()
		v := ""
		if meta != nil {
			b, _ := json.Marshal(meta)
			v = string(b)
		}
		writeMeta(t, st, "shop", v)
	}
	t0 := time.Now().Truncate(time.Second)
	at := func(d time.Duration) string { return fmt.Sprintf("at %d", t0.Add(d).Unix()) }
	rfc := func(d time.Duration) string { return t0.Add(d).UTC().Format(time.RFC3339) }

	py := startDriver(t, "", childEnv(), 30*time.Second, python, prog, st.APIURL, "shop", st.Prefix)
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
	// The API fails or refuses (a stand-in API): a value that still works is
	// kept, a failure is remembered; neither costs a read and a request per call.
	api := newStubAPI(t)
	for _, tt := range apiFailures() {
		t.Run(tt.name, func(t *testing.T) {
			token, version := st.Published("shop")
			setMeta(t, map[string]any{"version": version, "rotates_at": rfc(-time.Minute), "expires_at": rfc(tt.expiresIn)})
			api.set(tt.status, tt.retryAfter, tt.body(token, version))
			p := startDriver(t, "", childEnv(), 30*time.Second, python, prog, api.URL, tt.app, st.Prefix)
			clock := time.Duration(0)
			for i, s := range tt.steps {
				clock += s.advance
				var got answer
				p.do(t, at(clock), &got)
				ssm0, api0 := got.SSM, api.requests.Load()
				p.do(t, "get", &got)
				if msg := s.check(got.Value, got.Error, token, got.SSM-ssm0, int(api.requests.Load()-api0)); msg != "" {
					t.Errorf("step %d (%v): %s", i, clock, msg)
				}
			}
		})
	}
	if n := st.BadSignatures.Load(); n != 0 {
		t.Errorf("%d of the snippet's requests failed the SigV4 check", n)
	}
}

// stubAPI stands in for wxtoken's API when a test needs it to fail: every
// request gets the status, Retry-After and body set last (status 0: the
// connection is dropped), signatures unchecked; it counts the requests.
type stubAPI struct {
	URL      string
	requests atomic.Int64
	mu       sync.Mutex
	status   int
	retry    string
	body     string
}

func newStubAPI(t *testing.T) *stubAPI {
	a := &stubAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		a.mu.Lock()
		status, retry, body := a.status, a.retry, a.body
		a.mu.Unlock()
		if status == 0 {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
			}
			return
		}
		if retry != "" {
			w.Header().Set("Retry-After", retry)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

func (a *stubAPI) set(status int, retry, body string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status, a.retry, a.body = status, retry, body
}

// apiFailure is a case of the read rule when the API fails: the token of
// app ("shop" is published, "ghost" is not) has a meta whose rotation is
// past and which expires expiresIn after the snippet's clock starts; the API
// answers every request with status (0: drops the connection), Retry-After
// and an error body, or for a 429 withToken the published token.
type apiFailure struct {
	name       string
	app        string
	expiresIn  time.Duration
	status     int
	retryAfter string
	withToken  bool
	steps      []failStep
}

func (f apiFailure) body(token string, version int64) string {
	if f.withToken {
		return fmt.Sprintf(`{"app":%q,"access_token":%q,"version":%d,"expires_at":"2000-01-01T00:00:00Z","refreshed":false}`, f.app, token, version)
	}
	return `{"error":{"code":"unavailable","message":"stand-in"}}`
}

// failStep: move the clock on by advance and ask for the token; ok: the
// published token comes back (else an error); reads and requests: what it
// costs in SSM reads and API requests.
type failStep struct {
	advance         time.Duration
	ok              bool
	reads, requests int
}

// check is "" if a step's outcome is as s wants, else what is wrong.
func (s failStep) check(value, errText, token string, reads, requests int) string {
	var msgs []string
	switch {
	case s.ok && errText != "":
		msgs = append(msgs, "error "+errText+", want the token")
	case s.ok && value != token:
		msgs = append(msgs, fmt.Sprintf("fp %s, want the published fp %s", wechat.Fingerprint(value), wechat.Fingerprint(token)))
	case !s.ok && errText == "":
		msgs = append(msgs, "no error, want one")
	}
	if reads != s.reads || requests != s.requests {
		msgs = append(msgs, fmt.Sprintf("%d SSM reads and %d API requests, want %d and %d", reads, requests, s.reads, s.requests))
	}
	return strings.Join(msgs, "; ")
}

// repeat is n steps of every apart, each costing nothing.
func repeat(n int, every time.Duration, ok bool) []failStep {
	steps := make([]failStep, n)
	for i := range steps {
		steps[i] = failStep{every, ok, 0, 0}
	}
	return steps
}

// apiFailures are the cases both snippets must pass: when the ensure request
// (no stale value: nothing published, or about to expire) fails, a value that
// still works is kept 60 s, never past its expiry, and returned; with none,
// the failure is thrown again without a read or a request until its
// Retry-After (else 60 s) has passed.
func apiFailures() []apiFailure {
	cat := func(parts ...[]failStep) (all []failStep) {
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	aMinute := cat([]failStep{{0, false, 1, 1}}, repeat(10, time.Second, false),
		[]failStep{{49 * time.Second, false, 0, 0}, {2 * time.Second, false, 1, 1}})
	return []apiFailure{
		{name: "near expiry, the API fails: the value is kept 60 s, never past its expiry, then the failure 60 s",
			app: "shop", expiresIn: 80 * time.Second, status: http.StatusServiceUnavailable,
			steps: cat([]failStep{{0, true, 1, 1}}, repeat(10, time.Second, true), []failStep{
				{51 * time.Second, true, 1, 1}, // +61 s: valid 19 s more
				{18 * time.Second, true, 0, 0}, // +79 s
				{2 * time.Second, false, 1, 1}, // +81 s: expired
				{59 * time.Second, false, 0, 0},
				{2 * time.Second, false, 1, 1},
			})},
		{name: "nothing published, 503 with Retry-After 30: the failure again for 30 s",
			app: "ghost", status: http.StatusServiceUnavailable, retryAfter: "30",
			steps: cat([]failStep{{0, false, 1, 1}}, repeat(10, time.Second, false), []failStep{
				{19 * time.Second, false, 0, 0}, // +29 s
				{2 * time.Second, false, 1, 1},  // +31 s
				{29 * time.Second, false, 0, 0},
				{2 * time.Second, false, 1, 1},
			})},
		{name: "nothing published, 404: the failure again for 60 s", app: "ghost", status: http.StatusNotFound, steps: aMinute},
		{name: "nothing published, the connection drops: the failure again for 60 s", app: "ghost", status: 0, steps: aMinute},
	}
}
