package bench_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
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
	// Reads only after planned rotations: the 30 a day per server
	// process at steady state is 5 in 4 h, plus the first read.
	for _, k := range []byte{'a', 'b'} {
		r := by[k]
		if per := float64(r.Extra["ssm_reads"]) / float64(cfg.Servers); per > 6 {
			t.Errorf("%s: %.1f token reads per server in 4 h; want at most 6", r.Strategy, per)
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
	checkSilenceperSmoke(t, cfg, by) // (f), (g): silenceper_test.go
	// Tickets: refreshed as a classic token is (the first fetch, then one
	// about every 100 minutes), every page signed with a valid ticket.
	for _, k := range []byte{'a', 'b'} {
		r := by[k]
		if c := r.TicketCalls; c < 2 || c > 4 {
			t.Errorf("%s made %d ticket calls in 4 h; want 2 to 4", r.Strategy, c)
		}
		if r.Pages == 0 || r.PagesRejected != 0 || r.PagesFailed != 0 || r.TicketGap != 0 {
			t.Errorf("%s: %d pages, %d rejected, %d failed, ticket gap %v; want pages, none rejected, none failed, no gap", r.Strategy, r.Pages, r.PagesRejected, r.PagesFailed, r.TicketGap)
		}
		if r.Extra["ssm_reads"] == 0 || r.Extra["ssm_ticket_reads"] == 0 {
			t.Errorf("%s: %d token and %d ticket reads counted; want both", r.Strategy, r.Extra["ssm_reads"], r.Extra["ssm_ticket_reads"])
		}
	}
}

// TestTicketRotationSmoke runs wxtoken's ticket for a few hours under a
// WeChat that ends the previous ticket the moment it issues a new one:
// a server still holding the previous ticket in its cache signs with a
// dead ticket, and RefreshTicket with it answers the published ticket
// without a WeChat call, so that every page ends up signed validly.
func TestTicketRotationSmoke(t *testing.T) {
	cfg := DaySim
	cfg.Servers, cfg.Span, cfg.MeanInterval, cfg.PageInterval = 8, 4*time.Hour, 0, time.Minute
	rs := runTicketRotations(t, cfg, "stable", []ticketRotation{{rotation: wechattest.TicketNewEndsOld}})
	t.Logf("\n%s", ticketTable(cfg.Sample, rs))
	r := rs[0]
	if c := r.TicketCalls; c < 2 || c > 4 {
		t.Errorf("%d ticket calls in 4 h; want 2 to 4", c)
	}
	if r.Pages == 0 || r.PagesFailed != 0 || r.TicketGap != 0 {
		t.Errorf("%d pages, %d failed, ticket gap %v; want pages, none failed, no gap", r.Pages, r.PagesFailed, r.TicketGap)
	}
	if r.Calls != 0 || r.Extra["ssm_reads"] != 0 {
		t.Errorf("%d business calls, %d token reads; want none (pages only)", r.Calls, r.Extra["ssm_reads"])
	}
	if n := r.Extra["ticket_refresh_wechat_calls"]; n != 0 {
		t.Errorf("RefreshTicket with a superseded ticket made %d WeChat ticket calls; want none", n)
	}
	if r.PagesRejected != r.Extra["ticket_refreshes"] {
		t.Errorf("%d pages rejected, %d RefreshTicket calls; want one each", r.PagesRejected, r.Extra["ticket_refreshes"])
	}
}

// TicketDaySim is the configuration of the ticket rotation runs: a day of
// JS-SDK pages only (no business calls), a few busy servers, so that a
// server often holds a cached ticket when a new one is issued.
var TicketDaySim = func() SimConfig {
	c := DaySim
	c.Servers, c.MeanInterval, c.PageInterval = 5, 0, 30*time.Second
	return c
}()

// BenchmarkAvailability is the day of the benchmark: 24 simulated hours,
// 50 servers, the seven strategies side by side, then wxtoken's ticket under
// each of WeChat's possible rotations (TicketDaySim). It writes
// availability.md to WXTOKEN_BENCH_DIR.
func BenchmarkAvailability(b *testing.B) {
	cfg, tcfg := DaySim, TicketDaySim
	var rs, ts, un, old []SimResult
	started := time.Now()
	var mainWall time.Duration
	for i := 0; i < b.N; i++ {
		rs = runStrategies(b, cfg)
		un = runUnplanned(b, cfg)
		old = runWithoutMeta(b, cfg)
		mainWall = time.Since(started)
		ts = runTicketRotations(b, tcfg, registry.Stable, ticketRotations)
	}
	elapsed := time.Since(started)
	for _, r := range rs {
		key := strings.Fields(r.Strategy)[0]
		b.ReportMetric(float64(r.TokenCalls), key+"-token-calls")
		b.ReportMetric(100*r.RejectedShare(), key+"-rejected-%")
		if r.TicketGap >= 0 {
			b.ReportMetric(float64(r.TicketCalls), key+"-ticket-calls")
		}
	}
	for i, r := range ts {
		b.ReportMetric(float64(r.TicketCalls), fmt.Sprintf("rotation%d-ticket-calls", i+1))
		b.ReportMetric(float64(r.PagesFailed), fmt.Sprintf("rotation%d-pages-failed", i+1))
	}
	for i, r := range un {
		b.ReportMetric(float64(r.Extra["max_rejected_per_server"]), fmt.Sprintf("unplanned%d-max-rejected-per-server", i+1))
	}
	writeSection(b, "availability.md", availabilitySection(cfg, tcfg, rs, ts, un, old, mainWall, elapsed))
}

func availabilitySection(cfg, tcfg SimConfig, rs, ts, un, old []SimResult, mainWall, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## 1. Availability and quota over a simulated day\n\n")
	fmt.Fprintf(&b, "%d business servers call a WeChat business API (`/cgi-bin/getcallbackip` on the sandbox) at random for %v of simulated time "+
		"(a Poisson process, mean %v between two calls of a server: %d calls). Each strategy runs on a sandbox of its own with the same arrivals "+
		"and WeChat's documented rules: 7200 s tokens, a superseded classic token valid 300 s more, 2,000 classic calls a day. "+
		"A business call's round trip is %v–%v (WeChat checks the token halfway); a token call a business server makes itself (c, d, e, f) takes %v–%v. "+
		"wxtoken's own calls (the schedule every %v, the consumer package reading SSM, on-demand refreshes through the HTTP API) run against DynamoDB Local and moto and take no simulated time. "+
		"The shared token is sampled every %v. ",
		cfg.Servers, cfg.Span, cfg.MeanInterval, rs[0].Calls, cfg.CallLatency[0], cfg.CallLatency[1], cfg.FetchLatency[0], cfg.FetchLatency[1],
		cfg.Tick, cfg.Sample)
	fmt.Fprintf(&b, "wxtoken's app also keeps a jsapi ticket (its own credential: refreshed by the same schedule, published at `{prefix}/{app}/jsapi_ticket`), "+
		"and each of wxtoken's servers also signs a JS-SDK page now and then (a Poisson process of its own, mean %v between two pages of a server: %d pages) "+
		"with `Client.SignURL`, which reads the ticket from SSM through the same kind of cache as the token (at most %v old). "+
		"A page counts as rejected when the ticket its signature was made with fails the sandbox's `CheckTicket` at the moment of signing (WeChat would fail the page's `wx.config`); "+
		"the server then calls `Client.RefreshTicket` with that ticket and signs the page again, once. "+
		"The sandbox answers a repeated ticket call as integrators report WeChat does (the same ticket, its life extended to 7200 s); the other possibilities are below. "+
		"Wall time of this section: %v (the seven strategies, the unplanned rotations and the runs without meta %v, the ticket runs %v).\n\n",
		cfg.PageInterval, rs[0].Pages, client.DefaultMaxAge, elapsed.Round(time.Second), mainWall.Round(time.Second), (elapsed - mainWall).Round(time.Second))
	b.WriteString(availabilityTable(cfg, rs))
	b.WriteString("\nwxtoken's AWS side over the day:\n\n")
	for _, r := range rs[:2] {
		fmt.Fprintf(&b, "- %s: %s", r.Strategy, awsSide(r))
	}
	b.WriteString("\n" + readsSection(cfg, rs, old, un))
	b.WriteString(ticketSection(cfg, tcfg, rs, ts))
	return b.String()
}

// awsSide describes wxtoken's AWS calls in r, ending with a full stop and
// a newline.
func awsSide(r SimResult) string {
	var ev []string
	for k, v := range r.Extra {
		if strings.HasPrefix(k, "refresher:") {
			ev = append(ev, fmt.Sprintf("%s %d", strings.TrimPrefix(k, "refresher:"), v))
		}
	}
	slices.Sort(ev)
	return fmt.Sprintf("%d SSM reads of the token and %d of the ticket by the servers' consumer package, %d requests to the HTTP API "+
		"(%d by ticket reads, %d by RefreshTicket); refresher outcomes: %s.\n",
		r.Extra["ssm_reads"], r.Extra["ssm_ticket_reads"], r.Extra["api_requests"], r.Extra["ticket_read_requests"], r.Extra["ticket_refresh_requests"], strings.Join(ev, ", "))
}
