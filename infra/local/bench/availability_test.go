package bench_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// simStart is the simulated day's start: midnight in Beijing, so that the
// day is one quota day.
var simStart = time.Date(2026, 11, 20, 16, 0, 0, 0, time.UTC)

// wxtokenStrategy is wxtoken: the scheduled function ticks every
// SimConfig.Tick; every business server uses the consumer package
// (pkg/client), reading the published token from SSM (cached for its
// MaxAge) and, when WeChat rejects it, asking the HTTP API for a refresh
// with the failing token and retrying once, as client.Do does.
type wxtokenStrategy struct {
	mode    registry.Mode
	stack   *stacktest.Stack
	app     registry.App
	clients []*client.Client
	store   *tokenstore.Store // reads SSM directly, for the smoke test's check
	reads   *countingSSM

	mu        sync.Mutex
	published map[int64]time.Time // SSM version -> simulated time of the write
	// lastToken is what SSM holds: the token of the highest version written.
	lastToken   string
	lastVersion int64
	quotaAt     time.Time
	events      map[string]int
}

func (x *wxtokenStrategy) Name() string {
	return fmt.Sprintf("(%s) wxtoken, %s mode", map[registry.Mode]string{registry.Classic: "a", registry.Stable: "b"}[x.mode], x.mode)
}

// newWxtoken builds the stack for mode on a sandbox whose clock is frozen
// at simStart, and one consumer client per server.
func newWxtoken(tb testing.TB, mode registry.Mode, servers int) *wxtokenStrategy {
	app := registry.App{Name: "sim-" + string(mode), AppID: "wxsim00000000000" + string(mode[0]), Kind: registry.OfficialAccount, Mode: mode}
	st := stacktest.New(tb, stacktest.Options{Sandbox: wechattest.Config{Clock: wechattest.NewClock(simStart, 0)}}, app)
	x := &wxtokenStrategy{mode: mode, stack: st, app: app, published: map[int64]time.Time{}, events: map[string]int{}}
	// Record when each version was written, in simulated time: moto stamps
	// LastModifiedDate with the wall clock, which the simulation outruns.
	st.Refresher.Store = &stampingStore{Store: st.Refresher.Store, onPut: func(v int64, token string) {
		x.mu.Lock()
		x.published[v] = st.Sandbox.Now()
		if v > x.lastVersion {
			x.lastVersion, x.lastToken = v, token
		}
		x.mu.Unlock()
	}}
	st.Refresher.Observe = func(_ context.Context, ev refresh.Event) {
		x.mu.Lock()
		defer x.mu.Unlock()
		x.events[ev.Reason+"/"+string(ev.Outcome)]++
		if ev.ErrCode == 45009 && x.quotaAt.IsZero() {
			x.quotaAt = st.Sandbox.Now()
		}
	}
	x.reads = &countingSSM{inner: ssm.NewFromConfig(st.Cfg), stamp: x.stampOf}
	for s := 0; s < servers; s++ {
		x.clients = append(x.clients, &client.Client{
			App: app.Name, SSM: x.reads, Prefix: st.Prefix, Endpoint: st.APIURL,
			Credentials: stacktest.Creds, Region: stacktest.Region, Now: st.Sandbox.Now,
		})
	}
	x.store = tokenstore.New(ssm.NewFromConfig(st.Cfg), st.Prefix, "")
	return x
}

func (x *wxtokenStrategy) stampOf(v int64) (time.Time, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	t, ok := x.published[v]
	return t, ok
}

func (x *wxtokenStrategy) Token(w *sim, s int, done func(string, error)) {
	tok, err := x.clients[s].Token(w.ctx)
	done(tok, err)
}

func (x *wxtokenStrategy) Rejected(w *sim, s int, tok string, code int, done func(string, bool)) {
	fresh, _ := x.clients[s].Refresh(w.ctx, tok)
	done(fresh, fresh != "" && fresh != tok)
}

// Shared is the published token: what the last successful PutParameter
// wrote (tracked at the store, so that sampling every 10 s costs no SSM
// read; TestAvailabilitySmoke checks it against SSM).
func (x *wxtokenStrategy) Shared(w *sim) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.lastToken, true
}

func (x *wxtokenStrategy) Tick(w *sim) {
	ctx, cancel := context.WithTimeout(w.ctx, 50*time.Second) // the function's timeout
	defer cancel()
	if _, err := x.stack.Refresher.RefreshDue(ctx); err != nil {
		w.tb.Errorf("scheduled run: %v", err)
	}
}

// finish copies wxtoken's own counts into r.
func (x *wxtokenStrategy) finish(r *SimResult, start time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.quotaAt.IsZero() {
		r.QuotaExhausted = x.quotaAt.Sub(start)
	}
	r.Extra["ssm_reads"] = int(x.reads.n.Load())
	r.Extra["api_requests"] = int(x.stack.Requests.Load())
	for k, v := range x.events {
		r.Extra["refresher:"+k] = v
	}
}

// stampingStore tells onPut the version of every token written.
type stampingStore struct {
	refresh.Store
	onPut func(version int64, token string)
}

func (s *stampingStore) Put(ctx context.Context, app, token string) (int64, error) {
	v, err := s.Store.Put(ctx, app, token)
	if err == nil {
		s.onPut(v, token)
	}
	return v, err
}

// countingSSM counts GetParameter calls and replaces LastModifiedDate with
// the simulated time of the write.
type countingSSM struct {
	inner client.SSM
	stamp func(version int64) (time.Time, bool)
	n     atomic.Int64
}

func (c *countingSSM) GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error) {
	c.n.Add(1)
	out, err := c.inner.GetParameter(ctx, in, optFns...)
	if err == nil && out.Parameter != nil {
		if t, ok := c.stamp(out.Parameter.Version); ok {
			out.Parameter.LastModifiedDate = aws.Time(t)
		} else {
			out.Parameter.LastModifiedDate = nil // unknown: the client then relies on MaxAge
		}
	}
	return out, err
}

// runStrategies runs the five strategies of the benchmark with cfg, each on
// a sandbox of its own with the same arrivals.
func runStrategies(tb testing.TB, cfg SimConfig) []SimResult {
	var out []SimResult
	for _, mode := range []registry.Mode{registry.Classic, registry.Stable} {
		x := newWxtoken(tb, mode, cfg.Servers)
		r := runSim(tb, cfg, x.stack.Sandbox, x.app.AppID, x)
		x.finish(&r, simStart)
		if tok, _, err := x.store.Get(context.Background(), x.app.Name); err != nil || tok != x.lastToken {
			tb.Errorf("%s: SSM holds another token than the last one written (%v)", x.Name(), err)
		}
		tb.Logf("%s: simulated in %v", x.Name(), r.Wall.Round(time.Millisecond))
		out = append(out, r)
	}
	for _, mk := range []func(f fetcher) strategy{
		func(f fetcher) strategy { return &naive{f: f} },
		func(f fetcher) strategy { return newPerServer(f, cfg.Servers) },
		func(f fetcher) strategy { return &sharedNoCompare{f: f} },
	} {
		const appID, secret = "wxsim0000000000c", "sim-secret-0123456789abcdefghij"
		sb := wechattest.NewServer(wechattest.Config{Clock: wechattest.NewClock(simStart, 0)},
			wechattest.App{AppID: appID, Secret: secret, Kind: wechattest.OfficialAccount})
		st := mk(newFetcher(sb, appID, secret))
		r := runSim(tb, cfg, sb, appID, st)
		sb.Close()
		tb.Logf("%s: simulated in %v", st.Name(), r.Wall.Round(time.Millisecond))
		out = append(out, r)
	}
	return out
}

// availabilityTable renders the results as a markdown table.
func availabilityTable(cfg SimConfig, rs []SimResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| Strategy | WeChat token calls (tokens issued) | Business calls | Calls rejected 40001 / 42001 / 40014 (share of calls) | Failed in the end | Longest stretch without a valid shared token (sampled every %v) | Longest outage of one server | Daily quota exhausted? |\n", cfg.Sample)
	fmt.Fprintf(&b, "|---|---:|---:|---|---:|---|---|---|\n")
	for _, r := range rs {
		gap := "n/a (no shared token)"
		if r.SharedGap >= 0 {
			gap = simDur(r.SharedGap)
		}
		quota := "no"
		if r.QuotaExhausted >= 0 {
			quota = "**yes**, after " + simDur(r.QuotaExhausted)
		}
		fmt.Fprintf(&b, "| %s | %d (%d) | %d | %d / %d / %d (%.2f%%) | %d (%.2f%%) | %s | %s | %s |\n",
			r.Strategy, r.TokenCalls, r.TokensIssued, r.Calls, r.Rejected40001, r.Rejected42001, r.Rejected40014, 100*r.RejectedShare(),
			r.Failed, 100*float64(r.Failed)/float64(max(r.Calls, 1)), gap, simDur(r.ServerOutage), quota)
	}
	return b.String()
}

// simDur prints a simulated duration compactly.
func simDur(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	return d.Round(time.Second).String()
}
