package bench_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// burstResult is one coalescing burst.
type burstResult struct {
	callers     int
	tokenCalls  int
	checks      int // verify-before-refresh calls (get_api_domain_ip)
	p50, p99    time.Duration
	max         time.Duration
	sameToken   bool
	aws         awsCalls
	wall        time.Duration
	versionStep int64
	// Callers that got no token: waited for the holder until their 25 s
	// invocation ran out (refresh_in_progress), or failed otherwise.
	lockTimeouts, errors int
	firstError           string
}

// burst runs n concurrent on-demand refreshes of one app, each by a
// refresher of its own (as n Lambda instances would be), all carrying the
// token WeChat just stopped accepting. WeChat takes wechatLatency to answer
// a token call.
func burst(tb testing.TB, n int, wechatLatency time.Duration) burstResult {
	tb.Helper()
	app := registry.App{Name: "burst", AppID: "wxburst000000001", Kind: registry.OfficialAccount, Mode: registry.Stable}
	st := stacktest.New(tb, stacktest.Options{Sandbox: wechattest.Config{Clock: wechattest.NewClock(time.Now(), 1)}}, app)
	stale := st.Publish(app.Name)
	_, v0 := st.Published(app.Name)
	// The token dies at WeChat (as after a force_refresh elsewhere); every
	// business server sees 40001 and asks for a refresh at once.
	st.Sandbox.Revoke(app.AppID)
	st.Sandbox.Inject(wechattest.Fault{Path: wechattest.PathStableToken, Latency: wechattest.Duration(wechatLatency)})
	tokenCalls0, checks0 := st.Sandbox.TokenCalls(app.AppID), st.Sandbox.Calls(wechattest.PathDomainIP, app.AppID)

	counter := newAWSCounter()
	instances := make([]*refresh.Refresher, n)
	for i := range instances {
		instances[i] = instance(st.Cfg, counter, st.Sandbox, st.Table, st.Prefix, fmt.Sprintf("api-%d", i))
	}
	counter.snapshot()
	lat := make([]time.Duration, n)
	toks := make([]string, n)
	errs := make([]error, n)
	var start sync.WaitGroup
	start.Add(1)
	var wg sync.WaitGroup
	began := time.Now()
	for i := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second) // the API function's timeout
			defer cancel()
			t0 := time.Now()
			res, err := instances[i].Refresh(ctx, app.Name, stale)
			lat[i], toks[i], errs[i] = time.Since(t0), res.Token, err
		}()
	}
	start.Done()
	wg.Wait()
	res := burstResult{callers: n, wall: time.Since(began), aws: counter.snapshot(), sameToken: true}
	var fresh string
	var ok []time.Duration
	for i, err := range errs {
		switch {
		case errors.Is(err, refresh.ErrLockTimeout):
			res.lockTimeouts++
			continue
		case err != nil:
			res.errors++
			if res.firstError == "" {
				res.firstError = err.Error()
			}
			continue
		}
		ok = append(ok, lat[i])
		if fresh == "" {
			fresh = toks[i]
		}
		if toks[i] != fresh || toks[i] == stale {
			res.sameToken = false
		}
	}
	_, v1 := st.Published(app.Name)
	res.versionStep = v1 - v0
	res.tokenCalls = st.Sandbox.TokenCalls(app.AppID) - tokenCalls0
	res.checks = st.Sandbox.Calls(wechattest.PathDomainIP, app.AppID) - checks0
	res.p50, res.p99, res.max = percentile(ok, 50), percentile(ok, 99), percentile(ok, 100)
	return res
}

// burstLatency is how long WeChat takes to answer a token call in the
// burst: the window in which the other callers arrive and must wait.
const burstLatency = 300 * time.Millisecond

// TestBurstSmoke checks the burst measurement on a small burst under
// `make test`: one WeChat call, one new version, the same new token for
// all.
func TestBurstSmoke(t *testing.T) {
	r := burst(t, 5, burstLatency)
	if r.lockTimeouts+r.errors != 0 {
		t.Errorf("burst of 5: %d lock timeouts, %d errors (%s)", r.lockTimeouts, r.errors, r.firstError)
	}
	if r.tokenCalls != 1 || r.versionStep != 1 || !r.sameToken {
		t.Errorf("burst of 5: %d token calls, version +%d, same token %v; want 1, +1, true", r.tokenCalls, r.versionStep, r.sameToken)
	}
	if r.aws.service("DynamoDB") == 0 || r.aws.service("AmazonSSM") == 0 {
		t.Errorf("AWS calls not counted: %v", r.aws.calls)
	}
}

// BenchmarkBurst runs bursts of 10, 100 and 1,000 concurrent on-demand
// refreshes and writes burst.md.
func BenchmarkBurst(b *testing.B) {
	var rows []burstResult
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var r burstResult
			for i := 0; i < b.N; i++ {
				r = burst(b, n, burstLatency)
			}
			b.ReportMetric(float64(r.tokenCalls), "wechat-calls")
			b.ReportMetric(float64(r.p99.Milliseconds()), "p99-ms")
			rows = append(rows, r)
		})
	}
	var s strings.Builder
	fmt.Fprintf(&s, "## 2. Coalescing burst\n\n")
	fmt.Fprintf(&s, "N callers at once, each through a refresher with SDK clients of its own (as N instances of the API function would be), "+
		"ask for a refresh with the same stale token: the published token, which WeChat stopped accepting (revoked in the sandbox). "+
		"WeChat answers the token call after %v. DynamoDB Local and moto serve the AWS calls on this machine, so latencies are this machine's, not AWS's; "+
		"the counts are what matters. Calls per request are the burst's calls divided by N.\n\n", burstLatency)
	fmt.Fprintf(&s, "| Callers | WeChat token calls | Token checks (verify before refresh) | New versions published | All got the same new token | Callers without a token (lock timeout / other) | p50 | p99 | max | DynamoDB calls per request | SSM calls per request | By operation, per request |\n")
	fmt.Fprintf(&s, "|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		per := float64(r.callers)
		fmt.Fprintf(&s, "| %d | %d | %d | %d | %v | %d / %d | %v | %v | %v | %.2f | %.2f | %s |\n", r.callers, r.tokenCalls, r.checks, r.versionStep, yesNo(r.sameToken),
			r.lockTimeouts, r.errors,
			r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.max.Round(time.Millisecond),
			float64(r.aws.service("DynamoDB"))/per, float64(r.aws.service("AmazonSSM"))/per, r.aws.ops(per))
	}
	for _, r := range rows {
		if r.lockTimeouts+r.errors > 0 {
			fmt.Fprintf(&s, "\nWith %d callers, %d waited for the holder until their 25 s invocation ran out and %d failed otherwise", r.callers, r.lockTimeouts, r.errors)
			if r.firstError != "" {
				fmt.Fprintf(&s, " (first: %s)", r.firstError)
			}
			fmt.Fprintf(&s, ": the local engines (moto is a single Python process) could not serve %d callers' first reads in time on this machine. "+
				"In AWS the deployed API would not let such a burst through: API Gateway throttles each route at 50 requests a second with a burst of 100 (template parameters), "+
				"and SSM's default GetParameter throughput (40 a second, shared by the account) would throttle the callers' reads. p50/p99/max are over the callers that got a token.\n", r.callers)
		}
	}
	writeSection(b, "burst.md", s.String())
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "**no**"
}
