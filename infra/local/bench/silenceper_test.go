package bench_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/credential"
	"github.com/silenceper/wechat/v2/officialaccount"
	offConfig "github.com/silenceper/wechat/v2/officialaccount/config"
	"github.com/silenceper/wechat/v2/util"

	wxsilenceper "github.com/wxtoken/wxtoken/docs/consumers/silenceper"
	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// The real silenceper/wechat SDK in the simulated day (issue 15 §3): (f)
// as teams run it today, (g) through the wxtoken adapter
// (docs/consumers/silenceper). Both make their SDK calls synchronously at
// an event's simulated instant; silenceper's HTTP client is a package
// variable (util.DefaultHTTPClient), pointed for the run at the strategy's
// sandbox, which is why the runs are sequential (as runStrategies runs
// them).

// runSilenceper runs (f) and (g) with cfg, each on a sandbox of its own
// with the same arrivals as the other strategies.
func runSilenceper(tb testing.TB, cfg SimConfig) []SimResult {
	var out []SimResult

	const appID, secret = "wxsim0000000000c", "sim-secret-0123456789abcdefghij"
	sb := wechattest.NewServer(wechattest.Config{Clock: wechattest.NewClock(simStart, 0)},
		wechattest.App{AppID: appID, Secret: secret, Kind: wechattest.OfficialAccount})
	f := newSDKPerServer(sb, appID, secret, cfg.Servers)
	restore := sdkTransport(&sandboxRedirect{target: sb.URL})
	r := runSim(tb, cfg, sb, appID, f)
	restore()
	sb.Close()
	tb.Logf("%s: simulated in %v", f.Name(), r.Wall.Round(time.Millisecond))
	out = append(out, r)

	g := newSDKWxtoken(tb, cfg.Servers)
	refuse := &sandboxRedirect{} // no target: the SDK must not call WeChat at all
	restore = sdkTransport(refuse)
	r = runSim(tb, cfg, g.stack.Sandbox, g.app.AppID, g)
	restore()
	g.finish(&r, simStart)
	r.Extra["sdk_wechat_requests"] = int(refuse.n.Load())
	tb.Logf("%s: simulated in %v", g.Name(), r.Wall.Round(time.Millisecond))
	return append(out, r)
}

// sdkTransport points silenceper's HTTP client at rt and returns the
// function that puts the previous client back.
func sdkTransport(rt http.RoundTripper) (restore func()) {
	saved := util.DefaultHTTPClient
	util.DefaultHTTPClient = &http.Client{Transport: rt, Timeout: 30 * time.Second}
	return func() { util.DefaultHTTPClient = saved }
}

// sandboxRedirect sends the SDK's requests for WeChat's hosts to target (a
// sandbox's URL), counting them; with no target it refuses them.
type sandboxRedirect struct {
	target string
	n      atomic.Int32
}

func (s *sandboxRedirect) RoundTrip(r *http.Request) (*http.Response, error) {
	s.n.Add(1)
	if s.target == "" || r.URL.Host != "api.weixin.qq.com" {
		return nil, fmt.Errorf("bench: the SDK called %s%s, which this run does not serve", r.URL.Host, r.URL.Path)
	}
	u, err := url.Parse(s.target)
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = u.Scheme, u.Host, ""
	return http.DefaultTransport.RoundTrip(r)
}

// simCache is silenceper's cache.Cache (what a team plugs in: Memory,
// Redis) on the simulated clock, for one server.
type simCache struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]simEntry
}

type simEntry struct {
	val   any
	until time.Time
}

func newSimCache(now func() time.Time) *simCache {
	return &simCache{now: now, m: map[string]simEntry{}}
}

// Get implements cache.Cache.
func (c *simCache) Get(key string) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok && c.now().Before(e.until) {
		return e.val
	}
	return nil
}

// Set implements cache.Cache.
func (c *simCache) Set(key string, val any, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = simEntry{val: val, until: c.now().Add(timeout)}
	return nil
}

// IsExist implements cache.Cache.
func (c *simCache) IsExist(key string) bool { return c.Get(key) != nil }

// Delete implements cache.Cache.
func (c *simCache) Delete(key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
	return nil
}

// sdkPerServer (f) is what teams run today: each server has its own
// silenceper OfficialAccount with the SDK's default access-token handle
// (credential.DefaultAccessToken: classic /cgi-bin/token, cached for
// expires_in - 1500 s, one fetch at a time per server) and a cache of its
// own (a process's Memory cache, here on the simulated clock). The real
// SDK code makes the token calls, to the sandbox. A token call takes
// FetchLatency as in (c), (d), (e): WeChat issues the token halfway, and
// the SDK caches it then, so a call arriving meanwhile finds it cached by
// the time its own request would leave, as silenceper's mutex and second
// cache check make it wait for the first.
//
// No retry on 40001/40014/42001: the SDK has none, and the retry a team
// usually adds (call GetAccessToken again and repeat the call) would get
// the same token from the handle's cache until it expires, so it changes
// nothing; a rejected call fails. The name says so.
type sdkPerServer struct {
	appID  string
	oas    []*officialaccount.OfficialAccount
	caches []*simCache
}

func newSDKPerServer(sb *wechattest.Server, appID, secret string, servers int) *sdkPerServer {
	p := &sdkPerServer{appID: appID}
	for range servers {
		c := newSimCache(sb.Now)
		p.caches = append(p.caches, c)
		p.oas = append(p.oas, officialaccount.NewOfficialAccount(&offConfig.Config{AppID: appID, AppSecret: secret, Cache: c}))
	}
	return p
}

func (p *sdkPerServer) Name() string {
	return "(f) silenceper SDK, a cache per server (as shipped: no retry)"
}

// cacheKey is silenceper's cache key of an Official Account's token.
func (p *sdkPerServer) cacheKey() string {
	return fmt.Sprintf("%s_access_token_%s", credential.CacheKeyOfficialAccountPrefix, p.appID)
}

func (p *sdkPerServer) Token(w *sim, s int, done func(string, error)) {
	if p.caches[s].IsExist(p.cacheKey()) {
		tok, err := p.oas[s].GetAccessTokenContext(w.ctx)
		done(tok, err)
		return
	}
	lat := w.uniform(w.cfg.FetchLatency)
	w.after(lat/2, func() {
		tok, err := p.oas[s].GetAccessTokenContext(w.ctx)
		w.after(lat-lat/2, func() {
			if code, ok := wxsilenceper.ErrCode(err); ok && code == 45009 {
				w.quotaAt(w.now())
			}
			done(tok, err)
		})
	})
}

func (p *sdkPerServer) Rejected(w *sim, s int, tok string, code int, done func(string, bool)) {
	done("", false)
}
func (p *sdkPerServer) Shared(*sim) (string, bool) { return "", false }
func (p *sdkPerServer) Tick(*sim)                  {}

// sdkWxtoken (g) is the same SDK through the wxtoken adapter: wxtoken in
// stable mode (its default) as in (b), and on each server a silenceper
// OfficialAccount whose access-token handle is wxsilenceper.New over the
// server's pkg/client.Client and whose JS ticket handle is
// wxsilenceper.NewJsTicket over it. A business call takes its token from
// the SDK (OfficialAccount.GetAccessTokenContext); when WeChat rejects it,
// the adapter's retry-once helper (AccessToken.Retry, Do's second half,
// given the token the call used) asks wxtoken for a replacement and the
// call is repeated once with the token the SDK then hands out. Pages are
// signed by the SDK (Js.GetConfigContext with the page's URL without its
// fragment, as a page sends it); a rejected signature is answered with the
// adapter's JsTicket.Refresh and a second GetConfig. silenceper's HTTP
// client refuses every request in this run: the SDK makes no WeChat call.
type sdkWxtoken struct {
	*wxtokenStrategy
	handles []*wxsilenceper.AccessToken
	tickets []*wxsilenceper.JsTicket
	oas     []*officialaccount.OfficialAccount
}

func newSDKWxtoken(tb testing.TB, servers int) *sdkWxtoken {
	x := newWxtoken(tb, registry.Stable, servers, wechattest.Config{})
	g := &sdkWxtoken{wxtokenStrategy: x}
	for _, c := range x.clients {
		h, js := wxsilenceper.New(c), wxsilenceper.NewJsTicket(c)
		// No AppSecret: wxtoken holds it. The SDK requires a cache, which
		// the handles leave unused.
		oa := officialaccount.NewOfficialAccount(&offConfig.Config{AppID: x.app.AppID, Cache: newSimCache(x.stack.Sandbox.Now)})
		oa.SetAccessTokenHandle(h)
		oa.GetJs().SetJsTicketHandle(js)
		g.handles, g.tickets, g.oas = append(g.handles, h), append(g.tickets, js), append(g.oas, oa)
	}
	return g
}

func (g *sdkWxtoken) Name() string {
	return "(g) silenceper SDK through the wxtoken adapter, stable mode"
}

func (g *sdkWxtoken) Token(w *sim, s int, done func(string, error)) {
	tok, err := g.oas[s].GetAccessTokenContext(w.ctx)
	done(tok, err)
}

// Rejected is the adapter's Retry on the rejection WeChat answered (the
// SDK's typed error for the business call), with the token the call used;
// the repeated call takes its token from the SDK.
func (g *sdkWxtoken) Rejected(w *sim, s int, tok string, code int, done func(string, bool)) {
	var fresh string
	rejected := util.NewCommonError("GetCallbackIP", int64(code), "rejected")
	err := g.handles[s].Retry(w.ctx, tok, rejected, func() (err error) {
		fresh, err = g.oas[s].GetAccessTokenContext(w.ctx)
		return err
	})
	done(fresh, err == nil && fresh != "" && fresh != tok)
}

// SignPage has the SDK sign pageURL (without its fragment, which WeChat
// leaves out of the signature and silenceper does not strip), and checks
// that the signature was made with the ticket the adapter hands out.
func (g *sdkWxtoken) SignPage(w *sim, s int, pageURL string) (string, error) {
	x := g.wxtokenStrategy
	requests := x.stack.Requests.Load()
	page, _, _ := strings.Cut(pageURL, "#")
	cfg, err := g.oas[s].GetJs().GetConfigContext(w.ctx, page)
	x.mu.Lock()
	x.ticketReadRequests += int(x.stack.Requests.Load() - requests)
	x.mu.Unlock()
	if err != nil {
		return "", err
	}
	tk, err := g.tickets[s].GetTicketContext(w.ctx, "")
	if err != nil {
		return "", err
	}
	if client.SignJSSDK(tk, cfg.NonceStr, cfg.Timestamp, pageURL) != cfg.Signature {
		w.tb.Errorf("%s: the SDK's page signature was not made with the ticket the adapter holds", g.Name())
	}
	return tk, nil
}

// TicketRejected is the adapter's JsTicket.Refresh with the rejected
// ticket (compare-and-refresh), counted as wxtoken's TicketRejected is.
func (g *sdkWxtoken) TicketRejected(w *sim, s int, stale string) (string, error) {
	return g.countTicketRefresh(func() (string, error) { return g.tickets[s].Refresh(w.ctx, stale) })
}

// checkSilenceperSmoke checks (f) and (g) in TestAvailabilitySmoke's run:
// the SDK as shipped fetches per server and its calls are rejected when
// servers supersede each other's tokens, with nothing retried; through the
// adapter it behaves as wxtoken's stable mode (b) does, and never calls
// WeChat itself.
func checkSilenceperSmoke(t *testing.T, cfg SimConfig, by map[byte]SimResult) {
	t.Helper()
	if r := by['f']; r.TokenCalls < cfg.Servers || r.Rejected40001 == 0 || r.Failed != r.Rejected || r.Attempts != r.Calls {
		t.Errorf("%s: %d token calls, %d rejected (%d with 40001), %d failed, %d attempts for %d calls; "+
			"want at least a token call per server, 40001 rejections, each rejected call failed, no retry",
			r.Strategy, r.TokenCalls, r.Rejected, r.Rejected40001, r.Failed, r.Attempts, r.Calls)
	}
	r, b := by['g'], by['b']
	if r.Failed != 0 || r.Rejected != 0 || r.SharedGap != 0 || r.QuotaExhausted >= 0 || r.Calls == 0 || r.Attempts != r.Calls {
		t.Errorf("%s: %d failed, %d rejected, shared gap %v, quota %v, %d calls, %d attempts; want none failed or rejected, no gap, one attempt a call",
			r.Strategy, r.Failed, r.Rejected, r.SharedGap, r.QuotaExhausted, r.Calls, r.Attempts)
	}
	if r.TokenCalls != b.TokenCalls || r.TicketCalls != b.TicketCalls {
		t.Errorf("%s: %d token and %d ticket calls; want (b)'s %d and %d", r.Strategy, r.TokenCalls, r.TicketCalls, b.TokenCalls, b.TicketCalls)
	}
	if r.Pages == 0 || r.PagesRejected != 0 || r.PagesFailed != 0 || r.TicketGap != 0 {
		t.Errorf("%s: %d pages, %d rejected, %d failed, ticket gap %v; want pages, none rejected or failed, no gap", r.Strategy, r.Pages, r.PagesRejected, r.PagesFailed, r.TicketGap)
	}
	if per := float64(r.Extra["ssm_reads"]) / float64(cfg.Servers); r.Extra["ssm_reads"] == 0 || per > 6 {
		t.Errorf("%s: %.1f token reads per server in 4 h; want some, at most 6 (as (a) and (b))", r.Strategy, per)
	}
	if n := r.Extra["sdk_wechat_requests"]; n != 0 {
		t.Errorf("%s: the SDK sent %d requests to WeChat itself; want none", r.Strategy, n)
	}
}
