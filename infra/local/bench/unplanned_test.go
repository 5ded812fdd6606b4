package bench_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// unplanned is wxtoken with one rotation its consumers cannot know of in
// advance, at a simulated time: a forced refresh (stable mode: WeChat ends
// every earlier token at once), or another fetcher of the classic token
// (WeChat ends wxtoken's 5 minutes later). Each server learns of it when
// WeChat rejects its token, asks the API with the rejected token
// (client.Refresh, as client.Do does) and retries once; rejected counts
// that per server.
type unplanned struct {
	*wxtokenStrategy
	what     string
	at       time.Time
	act      func(w *sim) error
	done     bool
	rejected []int // first-try rejections per server
}

func (u *unplanned) Name() string { return u.wxtokenStrategy.Name() + ", " + u.what }

func (u *unplanned) Tick(w *sim) {
	u.wxtokenStrategy.Tick(w)
	if !u.done && !w.now().Before(u.at) {
		u.done = true
		if err := u.act(w); err != nil {
			w.tb.Errorf("%s: %v", u.Name(), err)
		}
	}
}

func (u *unplanned) Rejected(w *sim, s int, tok string, code int, done func(string, bool)) {
	u.rejected[s]++
	u.wxtokenStrategy.Rejected(w, s, tok, code, done)
}

// runUnplanned runs the two unplanned rotations at cfg.Span/2.
func runUnplanned(tb testing.TB, cfg SimConfig) []SimResult {
	var out []SimResult
	for _, mode := range []registry.Mode{registry.Classic, registry.Stable} {
		x := newWxtoken(tb, mode, cfg.Servers, wechattest.Config{})
		u := &unplanned{wxtokenStrategy: x, at: simStart.Add(cfg.Span / 2), rejected: make([]int, cfg.Servers)}
		if mode == registry.Stable {
			u.what = "a forced refresh at " + simDur(cfg.Span/2)
			u.act = func(w *sim) error {
				_, err := x.stack.Refresher.ForceRefresh(w.ctx, x.app.Name)
				return err
			}
		} else {
			u.what = "another fetcher of the classic token at " + simDur(cfg.Span/2)
			u.act = func(w *sim) error {
				other := &wechat.Client{BaseURLs: []string{x.stack.Sandbox.URL}, Now: x.stack.Sandbox.Now, MaxAttempts: 1}
				// stacktest's secret for the app.
				_, err := other.Token(context.Background(), x.app.AppID, "secret-"+x.app.Name+"-0123456789abcdefghij")
				return err
			}
		}
		r := runSim(tb, cfg, x.stack.Sandbox, x.app.AppID, u)
		x.finish(&r, simStart)
		r.Strategy = u.Name()
		for _, n := range u.rejected {
			if n > 0 {
				r.Extra["servers_rejected"]++
			}
			r.Extra["max_rejected_per_server"] = max(r.Extra["max_rejected_per_server"], n)
		}
		if !u.done {
			tb.Errorf("%s: the unplanned rotation never happened", u.Name())
		}
		tb.Logf("%s: simulated in %v", u.Name(), r.Wall.Round(time.Millisecond))
		out = append(out, r)
	}
	return out
}

// runWithoutMeta runs wxtoken in classic and stable mode with the rotation
// meta hidden from the servers' reads: the same arrivals read as the client
// did before wxtoken published it (a read at most every MaxAge, when called).
func runWithoutMeta(tb testing.TB, cfg SimConfig) []SimResult {
	var out []SimResult
	for _, mode := range []registry.Mode{registry.Classic, registry.Stable} {
		x := newWxtoken(tb, mode, cfg.Servers, wechattest.Config{})
		x.reads.stripMeta = true
		r := runSim(tb, cfg, x.stack.Sandbox, x.app.AppID, x)
		x.finish(&r, simStart)
		r.Strategy = x.Name() + ", without rotation meta"
		tb.Logf("%s: simulated in %v", r.Strategy, r.Wall.Round(time.Millisecond))
		out = append(out, r)
	}
	return out
}

// TestUnplannedSmoke: after an unplanned rotation each server has at most
// one call rejected (then retried with the new token), and none fails.
func TestUnplannedSmoke(t *testing.T) {
	cfg := DaySim
	cfg.Servers, cfg.Span, cfg.MeanInterval = 8, 4*time.Hour, time.Minute
	un := runUnplanned(t, cfg)
	for _, r := range un {
		if r.Failed != 0 || r.Extra["max_rejected_per_server"] > 1 || r.Rejected == 0 {
			t.Errorf("%s: %d failed, %d rejected, at most %d per server; want none failed, a rejection, at most one per server",
				r.Strategy, r.Failed, r.Rejected, r.Extra["max_rejected_per_server"])
		}
	}
	// Without the meta the servers read as the client did before it: far
	// more than the 6 per server in 4 h TestAvailabilitySmoke allows with it.
	old := runWithoutMeta(t, cfg)
	for _, r := range old {
		if per := float64(r.Extra["ssm_reads"]) / float64(cfg.Servers); per < 60 || r.Failed != 0 {
			t.Errorf("%s: %.1f token reads per server in 4 h, %d failed; want a read about every minute a server calls, none failed", r.Strategy, per, r.Failed)
		}
	}
	t.Logf("\n%s", readsSection(cfg, nil, old, un))
}

// readsSection is the consumers' side of the simulated day: SSM reads and
// KMS requests per server process in rs (wxtoken's strategies), against the
// same strategies without the rotation meta (old: the client's earlier
// rule, a read at most every MaxAge), and the unplanned rotations.
func readsSection(cfg SimConfig, rs, old, un []SimResult) string {
	var b strings.Builder
	days := cfg.Span.Hours() / 24
	const kmsPer10k = 0.03 // USD per 10,000 KMS requests
	perDay := func(r SimResult) (tok, tk float64) {
		return float64(r.Extra["ssm_reads"]) / float64(cfg.Servers) / days, float64(r.Extra["ssm_ticket_reads"]) / float64(cfg.Servers) / days
	}
	monthly := func(reads float64) float64 { return reads * 30 * 1000 * kmsPer10k / 10000 }
	fmt.Fprintf(&b, "### Consumers' reads\n\n"+
		"Each server process reads the token and the jsapi ticket with their rotation meta (`{leaf}_meta`: version, expiry, next planned rotation) in one `GetParameters` request "+
		"(the meta is a String: one KMS request per read, for the SecureString), and keeps each until %v plus a jitter of up to %v after its planned rotation. "+
		"Beside it, the same arrivals with the meta hidden from the servers' reads: the client's earlier rule, a read at most every %v when the server needs the value. "+
		"KMS costs $0.03 per 10,000 requests; a month is 30 days.\n\n", rotation.Lag, rotation.Jitter, client.DefaultMaxAge)
	b.WriteString("| Strategy | SSM reads per server a day (token + ticket) | KMS requests per server a day | KMS cost per 1,000 server processes a month | Without the meta: reads per server a day | Without the meta: KMS cost per 1,000 processes a month |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		if _, ok := r.Extra["ssm_reads"]; !ok {
			continue
		}
		tok, tk := perDay(r)
		before := "n/a"
		beforeCost := "n/a"
		for _, o := range old {
			if strings.HasPrefix(o.Strategy, r.Strategy) {
				otok, otk := perDay(o)
				before, beforeCost = fmt.Sprintf("%.1f (%.1f + %.1f)", otok+otk, otok, otk), fmt.Sprintf("$%.2f", monthly(otok+otk))
			}
		}
		fmt.Fprintf(&b, "| %s | %.1f (%.1f + %.1f) | %.1f | $%.2f | %s | %s |\n", r.Strategy, tok+tk, tok, tk, tok+tk, monthly(tok+tk), before, beforeCost)
	}
	fmt.Fprintf(&b, "\nUnplanned rotations (same arrivals, one rotation no server can know of in advance; each server notices it when WeChat rejects its token, "+
		"asks the API with the rejected token and retries once):\n\n")
	b.WriteString("| Run | Business calls | Rejected, then retried | Servers with a rejected call | Most rejected calls of one server | Failed in the end | WeChat token calls |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range un {
		fmt.Fprintf(&b, "| %s | %d | %d | %d of %d | %d | %d | %d |\n", r.Strategy, r.Calls, r.Rejected, r.Extra["servers_rejected"], cfg.Servers,
			r.Extra["max_rejected_per_server"], r.Failed, r.TokenCalls)
	}
	b.WriteString("\n")
	return b.String()
}
