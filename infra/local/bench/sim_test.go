package bench_test

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// SimConfig describes a simulated day: business servers calling WeChat's
// business APIs at random, each call made with the token a strategy gives.
type SimConfig struct {
	Servers int           // business servers
	Span    time.Duration // simulated time
	// MeanInterval is the mean time between two calls of one server
	// (exponentially distributed, so calls arrive as a Poisson process);
	// zero: no business calls (a day of page signings only).
	MeanInterval time.Duration
	// PageInterval is the mean time between two JS-SDK pages one server
	// signs (a Poisson process of its own, so that it leaves the business
	// calls' arrivals as they are); zero: no pages. Only strategies that
	// keep a jsapi ticket (pageSigner) sign pages.
	PageInterval time.Duration
	// CallLatency is the round trip of a business call; WeChat sees the
	// token halfway. FetchLatency is the round trip of a token call made by
	// a business server itself (strategies c, d, e). Uniform in [lo, hi].
	CallLatency, FetchLatency [2]time.Duration
	// Sample is how often the shared (published) token is checked.
	Sample time.Duration
	// Tick is the period of wxtoken's scheduled function.
	Tick time.Duration
	Seed uint64
}

// DaySim is the configuration of the benchmark: 24 hours, 50 servers.
var DaySim = SimConfig{
	Servers: 50, Span: 24 * time.Hour, MeanInterval: 2 * time.Minute, PageInterval: 30 * time.Minute,
	CallLatency:  [2]time.Duration{50 * time.Millisecond, 400 * time.Millisecond},
	FetchLatency: [2]time.Duration{100 * time.Millisecond, 800 * time.Millisecond},
	Sample:       10 * time.Second, Tick: time.Minute, Seed: 20261121,
}

// SimResult is what one strategy did over the simulated span.
type SimResult struct {
	Strategy   string
	TokenCalls int // WeChat credential calls (the sandbox's count)
	Calls      int // business calls the servers wanted to make
	Attempts   int // requests that reached WeChat (first tries and retries)
	// Rejected counts business calls whose request WeChat answered with
	// 40001, 40014 or 42001 (first try; a retry's rejection is counted in
	// Failed), by errcode.
	Rejected                                    int
	Rejected40001, Rejected42001, Rejected40014 int
	// TokensIssued is how many tokens WeChat issued (token calls refused
	// with 45009 issue none).
	TokensIssued int
	NoToken      int // calls made without a token (none could be had)
	Failed       int // calls that failed in the end (after the strategy's retry)
	// SharedGap is the longest stretch, sampled every SimConfig.Sample,
	// in which the shared (published) token was not valid at WeChat; -1
	// when the strategy has no shared token.
	SharedGap time.Duration
	// ServerOutage is the longest a server went from a failed call to its
	// next successful one.
	ServerOutage time.Duration
	// QuotaExhausted is when WeChat first answered 45009 (daily quota),
	// counted from the start; -1 if never.
	QuotaExhausted time.Duration
	// The jsapi ticket (strategies that keep one, pageSigner):
	// TicketCalls is every call on WeChat's ticket paths (the sandbox's
	// count), TicketsIssued the tickets WeChat issued. Pages is the pages
	// signed; PagesRejected those whose first signature WeChat would reject
	// (the ticket it was made with failed the sandbox's CheckTicket at the
	// moment of signing), by errcode in TicketRejects; PagesFailed those
	// still without a valid signature after the server's remedy
	// (RefreshTicket with the rejected ticket, and signing again), among
	// them PagesUnsigned, those the server could not sign at all (no
	// ticket to be had).
	TicketCalls, TicketsIssued                       int
	Pages, PagesRejected, PagesFailed, PagesUnsigned int
	TicketRejects                                    map[int]int
	// TicketGap is the longest stretch, sampled every SimConfig.Sample, in
	// which the published ticket was not valid at WeChat; -1 when the
	// strategy keeps no ticket.
	TicketGap time.Duration
	// Rotation is the sandbox's answer to a repeated ticket call in the
	// run (wxtoken's runs).
	Rotation ticketRotation
	// Extra holds strategy-specific counts (SSM reads, API requests, ...).
	Extra map[string]int
	// Wall is the real time the simulation took.
	Wall time.Duration
	// Config is the simulation's configuration.
	Config SimConfig
}

// RejectedShare is the share of business calls rejected with a token error.
func (r SimResult) RejectedShare() float64 {
	if r.Calls == 0 {
		return 0
	}
	return float64(r.Rejected) / float64(r.Calls)
}

// strategy is one way of handing tokens to business servers.
type strategy interface {
	Name() string
	// Token gets server s's token for a call starting now and calls done
	// with it, at once or after a simulated fetch.
	Token(w *sim, s int, done func(tok string, err error))
	// Rejected is the server's reaction when WeChat rejected tok with a
	// token error: done(fresh, true) retries the call once with fresh.
	Rejected(w *sim, s int, tok string, code int, done func(fresh string, retry bool))
	// Shared returns the token all servers would use now; ok is false
	// when the strategy has no shared token.
	Shared(w *sim) (tok string, ok bool)
	// Tick runs every SimConfig.Tick (wxtoken's schedule).
	Tick(w *sim)
}

// pageSigner is a strategy whose business servers also sign JS-SDK pages
// (wx.config) with the app's jsapi ticket. Its calls take no simulated
// time (wxtoken's run against the local engines).
type pageSigner interface {
	// SignPage has server s sign pageURL and returns the ticket the
	// signature was made with.
	SignPage(w *sim, s int, pageURL string) (ticket string, err error)
	// TicketRejected is server s's remedy when a page's wx.config failed
	// with a signature made with stale: it returns the ticket to sign
	// with instead.
	TicketRejected(w *sim, s int, stale string) (fresh string, err error)
	// SharedTicket is the ticket published now ("" when none).
	SharedTicket(w *sim) string
}

// sim is a discrete-event simulation on the sandbox clock: events run in
// time order, the clock is set to each event's time, and nothing moves
// time but the events.
type sim struct {
	tb    testing.TB
	cfg   SimConfig
	sb    *wechattest.Server
	appID string
	start time.Time
	end   time.Time
	q     eventQueue
	seq   int
	lat   *rand.Rand // latencies; arrivals come from their own stream
	res   SimResult
	hc    *http.Client
	ctx   context.Context

	failingSince   []time.Time // per server; zero when its last call succeeded
	gapStart       time.Time   // zero while the shared token is valid
	ticketGapStart time.Time   // zero while the published ticket is valid
}

type event struct {
	at  time.Time
	seq int
	fn  func()
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].seq < q[j].seq
	}
	return q[i].at.Before(q[j].at)
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// at schedules fn at t. Arrivals, ticks and samples are only generated
// before the end; a call in flight at the end finishes after it.
func (w *sim) at(t time.Time, fn func()) {
	w.seq++
	heap.Push(&w.q, &event{at: t, seq: w.seq, fn: fn})
}

func (w *sim) after(d time.Duration, fn func()) { w.at(w.now().Add(d), fn) }
func (w *sim) now() time.Time                   { return w.sb.Now() }

func (w *sim) uniform(r [2]time.Duration) time.Duration {
	return r[0] + time.Duration(w.lat.Int64N(int64(r[1]-r[0])+1))
}

// runSim runs strategy st for cfg.Span on sandbox sb (whose clock must be
// frozen at its start) for app appID.
func runSim(tb testing.TB, cfg SimConfig, sb *wechattest.Server, appID string, st strategy) SimResult {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	w := &sim{
		tb: tb, cfg: cfg, sb: sb, appID: appID, start: sb.Now(), ctx: ctx,
		lat:          rand.New(rand.NewPCG(cfg.Seed, 2)),
		res:          SimResult{Strategy: st.Name(), Config: cfg, QuotaExhausted: -1, TicketGap: -1, TicketRejects: map[int]int{}, Extra: map[string]int{}},
		hc:           &http.Client{Timeout: 30 * time.Second},
		failingSince: make([]time.Time, cfg.Servers),
	}
	w.end = w.start.Add(cfg.Span)
	// The same arrivals for every strategy: a stream of its own.
	arrivals := rand.New(rand.NewPCG(cfg.Seed, 1))
	for s := 0; s < cfg.Servers && cfg.MeanInterval > 0; s++ {
		for t := w.start; ; {
			t = t.Add(time.Duration(arrivals.ExpFloat64() * float64(cfg.MeanInterval)))
			if !t.Before(w.end) {
				break
			}
			w.at(t, func() { w.call(st, s) })
		}
	}
	ps, signs := st.(pageSigner)
	if signs {
		w.res.TicketGap = 0
		pages := rand.New(rand.NewPCG(cfg.Seed, 3))
		for s := 0; s < cfg.Servers && cfg.PageInterval > 0; s++ {
			for t := w.start; ; {
				t = t.Add(time.Duration(pages.ExpFloat64() * float64(cfg.PageInterval)))
				if !t.Before(w.end) {
					break
				}
				w.at(t, func() { w.page(ps, s) })
			}
		}
	}
	for t := w.start; t.Before(w.end); t = t.Add(cfg.Tick) {
		w.at(t, func() { st.Tick(w) })
	}
	shared := true
	for t := w.start.Add(time.Second); t.Before(w.end); t = t.Add(cfg.Sample) {
		w.at(t, func() {
			if signs {
				w.sampleTicket(ps.SharedTicket(w))
			}
			tok, ok := st.Shared(w)
			if !ok {
				shared = false
				return
			}
			w.sampleShared(tok)
		})
	}
	for n := 0; w.q.Len() > 0; n++ {
		if n > 50_000_000 {
			tb.Fatalf("simulation of %s did not end", st.Name())
		}
		e := heap.Pop(&w.q).(*event)
		w.sb.Clock().Set(e.at)
		e.fn()
	}
	w.sb.Clock().Set(w.end)
	w.sampleShared("") // close an open gap at the end
	if !shared {
		w.res.SharedGap = -1
	}
	if signs {
		w.sampleTicket("")
	}
	for _, since := range w.failingSince {
		if !since.IsZero() {
			w.res.ServerOutage = max(w.res.ServerOutage, w.end.Sub(since))
		}
	}
	w.res.TokenCalls = sb.TokenCalls(appID)
	w.res.TokensIssued = sb.TokensIssued(appID)
	w.res.TicketCalls = sb.TicketCalls(appID)
	w.res.TicketsIssued = sb.TicketsIssued(appID)
	w.res.Wall = time.Since(began)
	return w.res
}

// sampleShared records whether the shared token is valid now; "" at the end
// closes a gap still open.
func (w *sim) sampleShared(tok string) {
	now := w.now()
	valid := tok != "" && w.sb.Check(tok) == 0
	switch {
	case !valid && w.gapStart.IsZero() && now.Before(w.end):
		w.gapStart = now
	case (valid || !now.Before(w.end)) && !w.gapStart.IsZero():
		w.res.SharedGap = max(w.res.SharedGap, now.Sub(w.gapStart))
		w.gapStart = time.Time{}
	}
}

// sampleTicket records whether the published ticket is valid now; "" at
// the end closes a gap still open.
func (w *sim) sampleTicket(tk string) {
	now := w.now()
	valid := tk != "" && w.sb.CheckTicket(w.appID, wechattest.TicketJSAPI, tk) == 0
	switch {
	case !valid && w.ticketGapStart.IsZero() && now.Before(w.end):
		w.ticketGapStart = now
	case (valid || !now.Before(w.end)) && !w.ticketGapStart.IsZero():
		w.res.TicketGap = max(w.res.TicketGap, now.Sub(w.ticketGapStart))
		w.ticketGapStart = time.Time{}
	}
}

// page is one JS-SDK page server s signs. WeChat's verdict is the
// sandbox's CheckTicket on the ticket the signature was made with, at the
// moment of signing. When WeChat would reject it (the page's wx.config
// fails), the server takes the strategy's remedy and signs the page again,
// once.
func (w *sim) page(ps pageSigner, s int) {
	w.res.Pages++
	pageURL := fmt.Sprintf("https://shop.example.com/item?id=%d#buy", w.res.Pages)
	tk, err := ps.SignPage(w, s, pageURL)
	if err != nil {
		w.res.PagesUnsigned++
		w.res.PagesFailed++
		return
	}
	code := w.sb.CheckTicket(w.appID, wechattest.TicketJSAPI, tk)
	if code == 0 {
		return
	}
	w.res.PagesRejected++
	w.res.TicketRejects[code]++
	// An error with a ticket (a 429 carries the current one) still gives
	// the server a ticket to sign with.
	if fresh, _ := ps.TicketRejected(w, s, tk); fresh == "" || fresh == tk {
		w.res.PagesFailed++
		return
	}
	if tk, err = ps.SignPage(w, s, pageURL); err != nil || w.sb.CheckTicket(w.appID, wechattest.TicketJSAPI, tk) != 0 {
		w.res.PagesFailed++
	}
}

// call is one business call of server s.
func (w *sim) call(st strategy, s int) {
	w.res.Calls++
	started := w.now()
	st.Token(w, s, func(tok string, err error) {
		if err != nil || tok == "" {
			w.res.NoToken++
			w.quota(err)
			w.failed(s, started)
			return
		}
		w.attempt(st, s, tok, true, started)
	})
}

// attempt sends a business request with tok; WeChat sees it halfway
// through the round trip.
func (w *sim) attempt(st strategy, s int, tok string, first bool, started time.Time) {
	lat := w.uniform(w.cfg.CallLatency)
	w.after(lat/2, func() {
		code := w.business(tok)
		w.res.Attempts++
		w.after(lat-lat/2, func() {
			switch {
			case code == 0:
				w.succeeded(s, started)
				return
			case tokenError(code) && first:
				w.res.Rejected++
				switch code {
				case 40001:
					w.res.Rejected40001++
				case 42001:
					w.res.Rejected42001++
				case 40014:
					w.res.Rejected40014++
				}
			}
			if !first || !tokenError(code) {
				w.failed(s, started)
				return
			}
			st.Rejected(w, s, tok, code, func(fresh string, retry bool) {
				if !retry || fresh == "" {
					w.failed(s, started)
					return
				}
				w.attempt(st, s, fresh, false, started)
			})
		})
	})
}

func tokenError(code int) bool { return code == 40001 || code == 40014 || code == 42001 }

// succeeded ends server s's outage, unless the call started before the
// outage did (a slow call that began earlier says nothing about it).
func (w *sim) succeeded(s int, started time.Time) {
	if since := w.failingSince[s]; !since.IsZero() && !started.Before(since) {
		w.res.ServerOutage = max(w.res.ServerOutage, w.now().Sub(since))
		w.failingSince[s] = time.Time{}
	}
}

func (w *sim) failed(s int, started time.Time) {
	w.res.Failed++
	if w.failingSince[s].IsZero() {
		w.failingSince[s] = started
	}
}

// quota notes the first 45009 (daily quota) answer.
func (w *sim) quota(err error) {
	var we *wechat.Error
	if errors.As(err, &we) && we.Code == 45009 {
		w.quotaAt(w.now())
	}
}

func (w *sim) quotaAt(t time.Time) {
	if w.res.QuotaExhausted < 0 {
		w.res.QuotaExhausted = t.Sub(w.start)
	}
}

// business makes a real business call to the sandbox
// (GET /cgi-bin/getcallbackip) and returns WeChat's errcode.
func (w *sim) business(tok string) int {
	u := w.sb.URL + wechattest.PathCallbackIP + "?access_token=" + url.QueryEscape(tok)
	resp, err := w.hc.Get(u)
	if err != nil {
		w.tb.Fatalf("business call: %v", scrub(err))
	}
	defer resp.Body.Close()
	var a struct {
		ErrCode int `json:"errcode"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := json.Unmarshal(raw, &a); err != nil {
		w.tb.Fatalf("business call: answer is not JSON (%d bytes)", len(raw))
	}
	return a.ErrCode
}

// scrub drops the URL (and so the token in its query) from a transport
// error.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// fetcher is a business server's own token call (strategies c, d, e): the
// request reaches WeChat halfway through FetchLatency, the answer arrives
// at the end.
type fetcher struct {
	wx     *wechat.Client
	appID  string
	secret string
}

func newFetcher(sb *wechattest.Server, appID, secret string) fetcher {
	return fetcher{
		wx:    &wechat.Client{BaseURLs: []string{sb.URL}, Now: sb.Now, MaxAttempts: 1},
		appID: appID, secret: secret,
	}
}

// fetch gets a classic token; done runs when the answer arrives, with the
// expiry an SDK computes (arrival + expires_in).
func (f fetcher) fetch(w *sim, done func(tok string, expires time.Time, err error)) {
	lat := w.uniform(w.cfg.FetchLatency)
	w.after(lat/2, func() {
		t, err := f.wx.Token(w.ctx, f.appID, f.secret)
		w.after(lat-lat/2, func() {
			if err != nil {
				done("", time.Time{}, err)
				return
			}
			done(t.AccessToken, w.now().Add(t.ExpiresIn), nil)
		})
	})
}

// naive (c) fetches a token for every call.
type naive struct{ f fetcher }

func (n *naive) Name() string { return "(c) fetch a token for every call" }
func (n *naive) Token(w *sim, s int, done func(string, error)) {
	n.f.fetch(w, func(tok string, _ time.Time, err error) { done(tok, err) })
}
func (n *naive) Rejected(w *sim, s int, tok string, code int, done func(string, bool)) {
	done("", false)
}
func (n *naive) Shared(*sim) (string, bool) { return "", false }
func (n *naive) Tick(*sim)                  {}

// perServer (d) is the usual SDK default (silenceper/wechat's
// DefaultAccessToken): each server caches its own token for expires_in -
// 1500 s, one fetch at a time per server, and does nothing on 40001.
type perServer struct {
	f       fetcher
	tok     []string
	until   []time.Time
	waiting [][]func(string, error)
	margin  time.Duration
}

func newPerServer(f fetcher, servers int) *perServer {
	return &perServer{f: f, tok: make([]string, servers), until: make([]time.Time, servers),
		waiting: make([][]func(string, error), servers), margin: 1500 * time.Second}
}

func (p *perServer) Name() string { return "(d) each server caches its own token" }
func (p *perServer) Token(w *sim, s int, done func(string, error)) {
	if p.tok[s] != "" && w.now().Before(p.until[s]) {
		done(p.tok[s], nil)
		return
	}
	p.waiting[s] = append(p.waiting[s], done)
	if len(p.waiting[s]) > 1 {
		return // the server's mutex: one fetch, the others wait for it
	}
	p.f.fetch(w, func(tok string, expires time.Time, err error) {
		if err == nil {
			p.tok[s], p.until[s] = tok, expires.Add(-p.margin)
		}
		waiting := p.waiting[s]
		p.waiting[s] = nil
		for _, d := range waiting {
			d(tok, err)
		}
	})
}
func (p *perServer) Rejected(w *sim, s int, tok string, code int, done func(string, bool)) {
	done("", false)
}
func (p *perServer) Shared(*sim) (string, bool) { return "", false }
func (p *perServer) Tick(*sim)                  {}

// sharedNoCompare (e) is a shared cache (Redis) that any server refills:
// when the cache is empty or expired every server that finds it so fetches
// (no lock), and a server that gets 40001/40014/42001 refreshes and retries
// once without comparing the failing token with the cached one
// (PowerWeChat's CheckTokenNeedRefresh; EasyWeChat 5.x). Last writer wins.
// The cache keeps a token for expires_in from the answer's arrival, with no
// margin, as PowerWeChat and EasyWeChat 6.x do (reference/anchors.md).
type sharedNoCompare struct {
	f     fetcher
	tok   string
	until time.Time
}

func (c *sharedNoCompare) Name() string {
	return "(e) shared cache, refresh on 40001 without comparing"
}
func (c *sharedNoCompare) Token(w *sim, s int, done func(string, error)) {
	if c.tok != "" && w.now().Before(c.until) {
		done(c.tok, nil)
		return
	}
	c.refill(w, func(tok string, err error) { done(tok, err) })
}
func (c *sharedNoCompare) refill(w *sim, done func(string, error)) {
	c.f.fetch(w, func(tok string, expires time.Time, err error) {
		if err == nil {
			c.tok, c.until = tok, expires
		}
		done(tok, err)
	})
}
func (c *sharedNoCompare) Rejected(w *sim, s int, tok string, code int, done func(string, bool)) {
	c.refill(w, func(fresh string, err error) {
		if err != nil {
			w.quota(err)
		}
		done(fresh, err == nil)
	})
}
func (c *sharedNoCompare) Shared(w *sim) (string, bool) {
	if w.now().Before(c.until) {
		return c.tok, true
	}
	return "", true
}
func (c *sharedNoCompare) Tick(*sim) {}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := max(int(math.Ceil(p/100*float64(len(s))))-1, 0) // nearest rank
	return s[i]
}
