package consumers_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// TestNodeSnippetReadRule runs the README's Node.js snippet (consumer.js)
// with a clock the test moves (testdata/readrule.js) against the local
// stack, with the token's _meta parameter written by the test: while the
// meta says no rotation is due, reads in one process cost one GetParameters
// request; just after rotates_at (plus at most two minutes) it reads again; a
// meta of another version, an unreadable one or none falls back to 60 s; a
// value about to expire is asked of the API, whose answer is kept a minute.
func TestNodeSnippetReadRule(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	modules := tool(t, filepath.Join(repo, ".cache", "node", "node_modules"), "the AWS SDK for JavaScript")
	app := registry.App{Name: "shop", AppID: "wxreadrule000001", Kind: registry.OfficialAccount, Mode: registry.Classic}
	st := stacktest.New(t, stacktest.Options{}, app)
	st.Publish("shop")
	token, version := st.Published("shop")

	// setMeta writes the meta parameter ("" deletes it), as the refresher publishes it.
	setMeta := func(value string) { writeMeta(t, st, "shop", value) }
	start := time.Now().Truncate(time.Second)
	meta := func(version int64, expires, rotates time.Duration) string {
		return fmt.Sprintf(`{"version":%d,"expires_at":%q,"rotates_at":%q}`, version,
			start.Add(expires).UTC().Format(time.RFC3339), start.Add(rotates).UTC().Format(time.RFC3339))
	}

	// step: move the snippet's clock on by advance, then ask for the token;
	// reads and requests are what that costs in GetParameters requests and
	// API requests.
	type step struct {
		advance         time.Duration
		reads, requests int
	}
	fallback := []step{{0, 1, 0}, {59 * time.Second, 0, 0}, {2 * time.Second, 1, 0}, {59 * time.Second, 0, 0}}
	tests := []struct {
		name  string
		meta  string
		steps []step
	}{
		{"the meta says the next rotation is in 30 min: one read until just after it, then 60 s (it is late)",
			meta(version, 2*time.Hour, 30*time.Minute), []step{
				{0, 1, 0},
				{10 * time.Minute, 0, 0},
				{20*time.Minute + 59*time.Second, 0, 0}, // rotates_at + 59 s: not yet (60 s + jitter)
				{61 * time.Second, 1, 0},                // rotates_at + 2 min: past the jitter
				{59 * time.Second, 0, 0},                // the meta's rotation is due: 60 s
				{2 * time.Second, 1, 0},
			}},
		{"a meta of another version: 60 s", meta(version+1, 2*time.Hour, 30*time.Minute), fallback},
		{"a meta of an older version: 60 s", meta(version-1, 2*time.Hour, 30*time.Minute), fallback},
		{"an unreadable meta: 60 s", "not json", fallback},
		{"no meta: 60 s", "", fallback},
		{"the rotation is already due: 60 s", meta(version, 2*time.Hour, -time.Minute), fallback},
		{"the value expires within 2 min: asked of the API (no stale value), the answer kept a minute",
			meta(version, 90*time.Second, -time.Minute), []step{{0, 1, 1}, {59 * time.Second, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setMeta(tt.meta)
			p := startDriver(t, "", childEnv("NODE_PATH="+modules), 30*time.Second,
				nodeBin(t), "testdata/readrule.js", st.APIURL, "shop", st.Prefix, fmt.Sprint(start.UnixMilli()))
			var ack struct{ OK bool }
			if err := p.send("new", &ack); err != nil {
				t.Fatal(err)
			}
			reads := 0
			for i, s := range tt.steps {
				if err := p.send(fmt.Sprintf("advance %d", int(s.advance.Seconds())), &ack); err != nil {
					t.Fatal(err)
				}
				requests := st.Requests.Load()
				var got struct {
					Token, Error string
					Reads, Other int
				}
				if err := p.send("token", &got); err != nil {
					t.Fatal(err)
				}
				switch {
				case got.Error != "":
					t.Fatalf("step %d: %s", i, got.Error)
				case got.Token != token:
					t.Errorf("step %d: token fp %s, want the published fp %s", i, wechat.Fingerprint(got.Token), wechat.Fingerprint(token))
				case got.Other != 0:
					t.Errorf("step %d: %d SSM requests other than GetParameters", i, got.Other)
				}
				if n := got.Reads - reads; n != s.reads {
					t.Errorf("step %d (+%s): %d GetParameters requests, want %d", i, s.advance, n, s.reads)
				}
				if n := int(st.Requests.Load() - requests); n != s.requests {
					t.Errorf("step %d (+%s): %d API requests, want %d", i, s.advance, n, s.requests)
				}
				reads = got.Reads
			}
			if st.BadSignatures.Load() != 0 {
				t.Errorf("%d requests failed the SigV4 check", st.BadSignatures.Load())
			}
		})
	}

	// The API fails or refuses (a stand-in API): a value that still works is
	// kept, a failure is remembered; neither costs a read and a request per
	// call. During a 429's Retry-After the answer's token is used and SSM is
	// read at most once a minute.
	api := newStubAPI(t)
	failures := append(apiFailures(), apiFailure{
		name: "near expiry, 429 with the token and Retry-After 1800: read at most once a minute, no request",
		app:  "shop", expiresIn: 90 * time.Second, status: http.StatusTooManyRequests, retryAfter: "1800", withToken: true,
		steps: append([]failStep{{0, true, 1, 1}, {59 * time.Second, true, 0, 0}, {2 * time.Second, true, 1, 0}},
			append(repeat(20, time.Second, true), failStep{40 * time.Second, true, 1, 0}, failStep{59 * time.Second, true, 0, 0})...),
	})
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			token, version := st.Published("shop")
			setMeta(meta(version, tt.expiresIn, -time.Minute))
			api.set(tt.status, tt.retryAfter, tt.body(token, version))
			p := startDriver(t, "", childEnv("NODE_PATH="+modules), 30*time.Second,
				nodeBin(t), "testdata/readrule.js", api.URL, tt.app, st.Prefix, fmt.Sprint(start.UnixMilli()))
			var ack struct{ OK bool }
			if err := p.send("new", &ack); err != nil {
				t.Fatal(err)
			}
			reads, clock := 0, time.Duration(0)
			for i, s := range tt.steps {
				clock += s.advance
				if err := p.send(fmt.Sprintf("advance %d", int(s.advance.Seconds())), &ack); err != nil {
					t.Fatal(err)
				}
				requests := api.requests.Load()
				var got struct {
					Token, Error string
					Reads, Other int
				}
				if err := p.send("token", &got); err != nil {
					t.Fatal(err)
				}
				if msg := s.check(got.Token, got.Error, token, got.Reads-reads, int(api.requests.Load()-requests)); msg != "" {
					t.Errorf("step %d (%v): %s", i, clock, msg)
				}
				reads = got.Reads
			}
		})
	}
}
