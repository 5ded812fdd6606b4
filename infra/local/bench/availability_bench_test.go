package bench_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAvailabilitySmoke runs the simulation for a few hours with a few
// servers under `make test`, and checks what the benchmark's table rests
// on: wxtoken keeps a valid token published and every call succeeds; the
// per-server caches reject calls with 40001 (servers supersede each
// other's tokens); fetching per call spends one token call per call.
func TestAvailabilitySmoke(t *testing.T) {
	cfg := DaySim
	cfg.Servers, cfg.Span, cfg.MeanInterval = 8, 4*time.Hour, time.Minute
	rs := runStrategies(t, cfg)
	t.Logf("\n%s", availabilityTable(cfg, rs))
	by := map[byte]SimResult{}
	for _, r := range rs {
		by[r.Strategy[1]] = r
	}
	for _, k := range []byte{'a', 'b'} {
		r := by[k]
		if r.Failed != 0 || r.Rejected != 0 || r.SharedGap != 0 || r.QuotaExhausted >= 0 {
			t.Errorf("%s: %d failed, %d rejected, shared gap %v, quota %v; want none", r.Strategy, r.Failed, r.Rejected, r.SharedGap, r.QuotaExhausted)
		}
		if r.Calls == 0 || r.Attempts != r.Calls {
			t.Errorf("%s: %d calls, %d attempts; want equal and non-zero", r.Strategy, r.Calls, r.Attempts)
		}
	}
	// Classic: the first publish and a refresh about every 100 minutes.
	if c := by['a'].TokenCalls; c < 2 || c > 4 {
		t.Errorf("wxtoken classic made %d token calls in 4 h; want 2 to 4", c)
	}
	// Stable: the first fetch, then (in 4 h) one rotation in the final window.
	if c := by['b'].TokenCalls; c < 2 || c > 4 {
		t.Errorf("wxtoken stable made %d token calls in 4 h; want 2 to 4", c)
	}
	if r := by['c']; r.TokenCalls != r.Calls {
		t.Errorf("fetch per call: %d token calls for %d calls; want one each", r.TokenCalls, r.Calls)
	}
	if r := by['d']; r.Rejected40001 == 0 || r.TokenCalls < cfg.Servers {
		t.Errorf("per-server caches: %d rejected with 40001, %d token calls; want rejections and at least a call per server", r.Rejected40001, r.TokenCalls)
	}
	if r := by['e']; r.SharedGap < 0 {
		t.Errorf("shared cache: no shared token sampled")
	}
}

// BenchmarkAvailability is the day of the benchmark: 24 simulated hours,
// 50 servers, the five strategies side by side. It writes
// availability.md to WXTOKEN_BENCH_DIR.
func BenchmarkAvailability(b *testing.B) {
	cfg := DaySim
	var rs []SimResult
	started := time.Now()
	for i := 0; i < b.N; i++ {
		rs = runStrategies(b, cfg)
	}
	elapsed := time.Since(started)
	for _, r := range rs {
		key := strings.Fields(r.Strategy)[0]
		b.ReportMetric(float64(r.TokenCalls), key+"-token-calls")
		b.ReportMetric(100*r.RejectedShare(), key+"-rejected-%")
	}
	writeSection(b, "availability.md", availabilitySection(cfg, rs, elapsed))
}

func availabilitySection(cfg SimConfig, rs []SimResult, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## 1. Availability and quota over a simulated day\n\n")
	fmt.Fprintf(&b, "%d business servers call a WeChat business API (`/cgi-bin/getcallbackip` on the sandbox) at random for %v of simulated time "+
		"(a Poisson process, mean %v between two calls of a server: %d calls). Each strategy runs on a sandbox of its own with the same arrivals "+
		"and WeChat's documented rules: 7200 s tokens, a superseded classic token valid 300 s more, 2,000 classic calls a day. "+
		"A business call's round trip is %v–%v (WeChat checks the token halfway); a token call a business server makes itself (c, d, e) takes %v–%v. "+
		"wxtoken's own calls (the schedule every %v, the consumer package reading SSM, on-demand refreshes through the HTTP API) run against DynamoDB Local and moto and take no simulated time. "+
		"The shared token is sampled every %v. Wall time of this section: %v.\n\n",
		cfg.Servers, cfg.Span, cfg.MeanInterval, rs[0].Calls, cfg.CallLatency[0], cfg.CallLatency[1], cfg.FetchLatency[0], cfg.FetchLatency[1],
		cfg.Tick, cfg.Sample, elapsed.Round(time.Second))
	b.WriteString(availabilityTable(cfg, rs))
	b.WriteString("\nwxtoken's AWS side over the day:\n\n")
	for _, r := range rs[:2] {
		fmt.Fprintf(&b, "- %s: %d SSM reads by the servers' consumer package, %d requests to the HTTP API", r.Strategy, r.Extra["ssm_reads"], r.Extra["api_requests"])
		var ev []string
		for k, v := range r.Extra {
			if strings.HasPrefix(k, "refresher:") {
				ev = append(ev, fmt.Sprintf("%s %d", strings.TrimPrefix(k, "refresher:"), v))
			}
		}
		slices.Sort(ev)
		fmt.Fprintf(&b, "; refresher outcomes: %s.\n", strings.Join(ev, ", "))
	}
	return b.String()
}
