// Package wechattest is a sandbox of WeChat's credential APIs that behaves as
// WeChat documents them (see the project's reference/wechat.md), in the style
// of net/http/httptest: NewServer starts one on a loopback port, and
// infra/local/wxsandbox runs one standalone.
//
// It serves, on one host, what WeChat serves on api.weixin.qq.com and
// qyapi.weixin.qq.com:
//
//   - GET /cgi-bin/token: a new classic token on every call; the previous
//     one stays valid for Config.Grace (300 s), then answers 40001; any
//     older one is invalid at once (only "new and old" overlap).
//   - POST /cgi-bin/stable_token: in normal mode the same token with a
//     decreasing expires_in until its last Config.StableWindow (300 s), when
//     a new token is issued and the old one lives out its life; with
//     force_refresh a new token at once and every earlier one invalid at once, at
//     most Config.ForceRefreshDailyLimit (20) a day, Config.ForceRefreshInterval
//     (30 s) apart (a call sooner returns the current token unchanged). GET
//     answers 43002. Classic and stable tokens never invalidate each other.
//   - GET /cgi-bin/gettoken: WeCom; a new token on every call, earlier ones
//     valid until their own expiry (WeCom documents no invalidation on
//     re-fetch; Revoke models its early invalidation).
//   - GET /cgi-bin/get_api_domain_ip (and /cgi-bin/getcallbackip): a
//     business call that accepts a valid token and answers 41001 for none,
//     40014 for one never issued, 42001 for an expired one and 40001 for one
//     superseded past its grace, forcibly replaced, or revoked.
//   - POST /cgi-bin/clear_quota?access_token=...: body {"appid":"..."}; with
//     a valid token of that account, resets its daily API call counts (see
//     ClearQuota), at most Config.ClearQuotaMonthlyLimit (10) times a month
//     (Beijing calendar), then 48006; 40013 for another account's appid.
//   - GET /cgi-bin/ticket/getticket?access_token=...&type=jsapi|wx_card
//     (Official Accounts), GET /cgi-bin/get_jsapi_ticket and GET
//     /cgi-bin/ticket/get?type=agent_config (WeCom): a ticket for a valid
//     access token of the account (40001/40014/42001/41001 otherwise, as
//     for a business call), living Config.TicketLifetime, within WeCom's
//     hourly limits (45009) and a configurable daily limit for Official
//     Accounts; what a repeated call does is Config.TicketRotation.
//   - POST /cgi-bin/clear_quota/v2?appid=...&appsecret=...: the same reset
//     without a token (for when the token API's quota is used up and no
//     token is left), sharing the monthly limit.
//
// Parameter errors (40002, 41002, 41004, 40013, 40001/40125 for a wrong
// secret, 43001, 43002, 47001), daily quotas (45009), stable_token's minute
// quota (45011) and IP whitelists (40164, WeCom 60020, quoting the caller's
// IP) are answered as WeChat answers them, with " rid: ..." appended to
// errmsg. Quotas reset at midnight Beijing time on the sandbox clock.
//
// Tests steer it from Go (Clock, Inject, Stats, Revoke, AddApp, ClearQuota)
// or over HTTP under the reserved path /_sandbox/ (see ServeHTTP).
package wechattest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
)

// Kind is the type of WeChat account an app is.
type Kind string

// The kinds of account.
const (
	OfficialAccount Kind = "offiaccount"
	MiniProgram     Kind = "miniprogram"
	WeCom           Kind = "wecom"
)

// App is an account registered with the sandbox.
type App struct {
	// AppID is the appid, or the corpid for WeCom.
	AppID string `json:"appid"`
	// Secret is the AppSecret, or the application's corpsecret for WeCom.
	Secret string `json:"secret"`
	// Kind selects the credential API: WeCom apps use gettoken only, the
	// others token and stable_token only.
	Kind Kind `json:"kind"`
	// AllowedIPs is the IP whitelist for calls that carry the secret; nil
	// or empty means no whitelist is enforced.
	AllowedIPs []string `json:"allowed_ips,omitempty"`
}

// Config holds the sandbox's documented parameters; zero fields take WeChat's
// values.
type Config struct {
	TokenLifetime          time.Duration // 7200 s
	Grace                  time.Duration // 300 s: a superseded classic token stays valid this long
	StableWindow           time.Duration // 300 s: stable normal mode rotates in the token's last StableWindow
	ForceRefreshInterval   time.Duration // 30 s between effective force_refresh calls
	ForceRefreshDailyLimit int           // 20 force_refresh calls a day
	ClassicDailyQuota      int           // 2000 /cgi-bin/token calls a day per app
	StableDailyQuota       int           // 500000 /cgi-bin/stable_token calls a day per app
	StableMinuteQuota      int           // 10000 /cgi-bin/stable_token calls a minute per app
	WeComDailyQuota        int           // 0: WeCom documents no daily count for gettoken; >0 enforces one
	ClearQuotaMonthlyLimit int           // 10 effective clear_quota resets a month per account
	TokenLength            int           // 512: WeChat asks integrators to reserve 512 characters

	// Tickets (jsapi_ticket, the card api_ticket, WeCom's jsapi and
	// agent_config tickets).
	TicketLifetime time.Duration // 7200 s
	// TicketRotation is what a repeated ticket call does (undocumented);
	// TicketGrace how long TicketNewEndsOld keeps the previous ticket.
	TicketRotation TicketRotation
	TicketGrace    time.Duration
	// TicketDailyQuota limits an Official Account's ticket calls a day, per
	// type; WeChat publishes no number ("very limited"), so 1000 is a guess
	// a test can lower.
	TicketDailyQuota int
	// WeComTicketHourlyPerCorp and WeComTicketHourlyPerApp are WeCom's
	// documented limits: 400 jsapi tickets an hour per corporation, 100
	// per application.
	WeComTicketHourlyPerCorp, WeComTicketHourlyPerApp int
	// WeComTicketWindow is how WeCom counts "an hour", which it does not
	// say: per clock hour (the default) or over the last 60 minutes.
	WeComTicketWindow TicketWindow
	TicketLength      int // 86, as WeChat's examples
	// Clock is the sandbox time; nil means a clock starting now at real speed.
	Clock *Clock
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defi := func(i *int, v int) {
		if *i <= 0 {
			*i = v
		}
	}
	def(&c.TokenLifetime, 7200*time.Second)
	def(&c.Grace, 300*time.Second)
	def(&c.StableWindow, 300*time.Second)
	def(&c.ForceRefreshInterval, 30*time.Second)
	defi(&c.ForceRefreshDailyLimit, 20)
	defi(&c.ClassicDailyQuota, 2000)
	defi(&c.StableDailyQuota, 500000)
	defi(&c.StableMinuteQuota, 10000)
	defi(&c.ClearQuotaMonthlyLimit, 10)
	defi(&c.TokenLength, 512)
	def(&c.TicketLifetime, 7200*time.Second)
	defi(&c.TicketDailyQuota, 1000)
	defi(&c.WeComTicketHourlyPerCorp, 400)
	defi(&c.WeComTicketHourlyPerApp, 100)
	defi(&c.TicketLength, 86)
	if c.Clock == nil {
		c.Clock = NewClock(time.Now(), 1)
	}
	return c
}

// API is one of WeChat's credential APIs.
type API string

// The credential APIs.
const (
	Classic  API = "classic" // /cgi-bin/token
	Stable   API = "stable"  // /cgi-bin/stable_token
	WeComAPI API = "wecom"   // /cgi-bin/gettoken
)

// The sandbox's paths.
const (
	PathToken       = "/cgi-bin/token"
	PathStableToken = "/cgi-bin/stable_token"
	PathGetToken    = "/cgi-bin/gettoken"
	PathDomainIP    = "/cgi-bin/get_api_domain_ip"
	PathCallbackIP  = "/cgi-bin/getcallbackip"
	PathClearQuota  = "/cgi-bin/clear_quota"
	// PathClearQuotaV2 is clear_quota by appid and AppSecret, for when no
	// valid token is left.
	PathClearQuotaV2 = "/cgi-bin/clear_quota/v2"
	AdminPrefix      = "/_sandbox/"
)

type tokenRec struct {
	token     string
	appID     string
	api       API
	issuedAt  time.Time
	expiresAt time.Time
	revokedAt time.Time // zero: never; otherwise invalid from then on
}

func (r *tokenRec) validAt(t time.Time) bool {
	return t.Before(r.expiresAt) && (r.revokedAt.IsZero() || t.Before(r.revokedAt))
}

type appState struct {
	app     App
	current map[API]*tokenRec

	day          string // Beijing date the counters below belong to
	dailyCalls   map[API]int
	forceCount   int
	lastForce    time.Time
	minute       int64 // Unix minute stableMinute counts
	stableMinute int
	tokensIssued int

	clearMonth string // Beijing month clears counts
	clears     int    // effective clear_quota resets that month

	tickets        map[TicketType]*ticketRec // the latest of each type
	ticketCounts   ticketCounts
	ticketsIssued  int
	ticketRequests map[TicketType]int
}

// Sandbox is the WeChat sandbox as an http.Handler, for serving on a
// listener of one's own; NewServer wraps it in a test server.
type Sandbox struct {
	cfg Config

	mu     sync.Mutex
	apps   map[string]*appState
	tokens map[string]*tokenRec
	// ticketList is every ticket issued, in order.
	ticketList []*ticketRec
	calls      map[string]map[string]int // path -> appid -> n
	faults     []*faultState
}

// New returns a sandbox with the given configuration and apps.
func New(cfg Config, apps ...App) *Sandbox {
	s := &Sandbox{
		cfg:    cfg.withDefaults(),
		apps:   map[string]*appState{},
		tokens: map[string]*tokenRec{},
		calls:  map[string]map[string]int{},
	}
	for _, a := range apps {
		s.AddApp(a)
	}
	return s
}

// Clock returns the sandbox's clock.
func (s *Sandbox) Clock() *Clock { return s.cfg.Clock }

// Now returns the sandbox time.
func (s *Sandbox) Now() time.Time { return s.cfg.Clock.Now() }

// Config returns the effective configuration.
func (s *Sandbox) Config() Config { return s.cfg }

// AddApp registers an app, or replaces the registration of the same appid
// (keeping its tokens, as a secret reset in WeChat's console would).
func (s *Sandbox) AddApp(a App) {
	leakscan.Record(leakscan.Secret, a.Secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.apps[a.AppID]; ok {
		st.app = a
		return
	}
	s.apps[a.AppID] = &appState{app: a, current: map[API]*tokenRec{}, dailyCalls: map[API]int{}}
}

// Revoke invalidates every token of the app at once, as WeCom may do "for
// operational reasons" and as a leaked-token response would.
func (s *Sandbox) Revoke(appID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	for _, r := range s.tokens {
		if r.appID == appID && r.validAt(now) {
			r.revokedAt = now
		}
	}
}

// ServeHTTP serves WeChat's paths and the admin paths:
//
//	GET    /_sandbox/stats   counters (Stats) as JSON
//	POST   /_sandbox/faults  add a Fault (JSON body)
//	DELETE /_sandbox/faults  remove every fault (?appid=X: the faults limited to app X)
//	POST   /_sandbox/clock   {"advance":"90m"} and/or {"speed":60}; answers {"now":...}
//	POST   /_sandbox/apps    register an App (JSON body)
//	GET    /_sandbox/tickets/check?appid=&type=&ticket=  {"errcode":0} when the ticket is valid (CheckTicket)
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, AdminPrefix) {
		s.serveAdmin(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	appID := s.appIDOf(r, body)
	s.count(r.URL.Path, appID)
	if f := s.takeFault(r.URL.Path, appID); f != nil {
		if f.apply(w, r) {
			return
		}
	}
	switch r.URL.Path {
	case PathToken:
		s.serveToken(w, r)
	case PathStableToken:
		s.serveStableToken(w, r, body)
	case PathGetToken:
		s.serveGetToken(w, r)
	case PathDomainIP, PathCallbackIP:
		s.serveBusiness(w, r)
	case PathClearQuota:
		s.serveClearQuota(w, r, body)
	case PathClearQuotaV2:
		s.serveClearQuotaV2(w, r, body)
	case PathTicket:
		s.serveTicket(w, r)
	case PathWeComJSAPITicket, PathWeComAgentTicket:
		s.serveWeComTicket(w, r)
	default:
		// WeChat answers unknown cgi paths with a JSON errcode.
		writeErr(w, 48001, "api unauthorized")
	}
}

// appIDOf extracts the app a request is about, for counters and faults.
func (s *Sandbox) appIDOf(r *http.Request, body []byte) string {
	q := r.URL.Query()
	switch r.URL.Path {
	case PathToken:
		return q.Get("appid")
	case PathClearQuotaV2:
		return clearV2Params(q, body).AppID
	case PathGetToken:
		return q.Get("corpid")
	case PathStableToken:
		var b struct {
			AppID string `json:"appid"`
		}
		_ = json.Unmarshal(body, &b)
		return b.AppID
	case PathDomainIP, PathCallbackIP, PathClearQuota, PathTicket, PathWeComJSAPITicket, PathWeComAgentTicket:
		s.mu.Lock()
		defer s.mu.Unlock()
		if rec, ok := s.tokens[q.Get("access_token")]; ok {
			return rec.appID
		}
	}
	return ""
}

func (s *Sandbox) count(path, appID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.calls[path]
	if m == nil {
		m = map[string]int{}
		s.calls[path] = m
	}
	m[appID]++
}

// --- credential endpoints

func (s *Sandbox) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeErr(w, 43001, "require GET method")
		return
	}
	q := r.URL.Query()
	if q.Get("grant_type") != "client_credential" {
		writeErr(w, 40002, "invalid grant_type")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.accountLocked(w, r, q.Get("appid"), q.Get("secret"), 40001, "invalid credential, access_token is invalid or not latest, could get access_token by getStableAccessToken")
	if st == nil {
		return
	}
	now := s.Now()
	s.rollDay(st, now)
	if st.dailyCalls[Classic] >= s.cfg.ClassicDailyQuota {
		writeErr(w, 45009, "reach max api daily quota limit")
		return
	}
	st.dailyCalls[Classic]++
	// "新老 access_token 都可用": the new token and its immediate
	// predecessor overlap for the grace period; older ones die now.
	prev := st.current[Classic]
	s.revokeLocked(st.app.AppID, Classic, now, prev)
	if prev != nil && prev.validAt(now) {
		if until := now.Add(s.cfg.Grace); prev.revokedAt.IsZero() || until.Before(prev.revokedAt) {
			prev.revokedAt = until
		}
	}
	rec := s.issueLocked(st, Classic, now)
	writeToken(w, rec, now, false)
}

func (s *Sandbox) serveStableToken(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		writeErr(w, 43002, "require POST method")
		return
	}
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeErr(w, 47001, "data format error")
		return
	}
	if req.GrantType != "client_credential" {
		writeErr(w, 40002, "invalid grant_type")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.accountLocked(w, r, req.AppID, req.Secret, 40125, "invalid appsecret")
	if st == nil {
		return
	}
	now := s.Now()
	s.rollDay(st, now)
	if m := now.Unix() / 60; m != st.minute {
		st.minute, st.stableMinute = m, 0
	}
	if st.stableMinute >= s.cfg.StableMinuteQuota {
		writeErr(w, 45011, "api minute-quota reach limit  mustslower  retry next minute")
		return
	}
	if st.dailyCalls[Stable] >= s.cfg.StableDailyQuota {
		writeErr(w, 45009, "reach max api daily quota limit")
		return
	}
	st.stableMinute++
	st.dailyCalls[Stable]++

	cur := st.current[Stable]
	if req.ForceRefresh {
		if cur != nil && cur.validAt(now) && !st.lastForce.IsZero() && now.Sub(st.lastForce) < s.cfg.ForceRefreshInterval {
			// "间隔 30 秒" — sooner calls do not refresh.
			writeToken(w, cur, now, false)
			return
		}
		if st.forceCount >= s.cfg.ForceRefreshDailyLimit {
			writeErr(w, 45009, "reach max api daily quota limit")
			return
		}
		st.forceCount++
		st.lastForce = now
		// The leaked token may be the one still living out its life after
		// a rotation: every stable token of the app dies now.
		s.revokeLocked(st.app.AppID, Stable, now, nil)
		writeToken(w, s.issueLocked(st, Stable, now), now, false)
		return
	}
	if cur != nil && cur.validAt(now) && now.Before(cur.expiresAt.Add(-s.cfg.StableWindow)) {
		writeToken(w, cur, now, false)
		return
	}
	// Inside the final window (or no live token): a new token; the old one
	// is left to expire on its own.
	writeToken(w, s.issueLocked(st, Stable, now), now, false)
}

func (s *Sandbox) serveGetToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeErr(w, 43001, "require GET method")
		return
	}
	q := r.URL.Query()
	switch {
	case q.Get("corpid") == "":
		writeErr(w, 41002, "corpid missing")
		return
	case q.Get("corpsecret") == "":
		writeErr(w, 41004, "corpsecret missing")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.apps[q.Get("corpid")]
	if !ok || st.app.Kind != WeCom {
		writeErr(w, 40013, "invalid corpid")
		return
	}
	if q.Get("corpsecret") != st.app.Secret {
		writeErr(w, 40001, "invalid credential")
		return
	}
	if ip, ok := denied(st.app, r); ok {
		writeErr(w, 60020, fmt.Sprintf("not allow to access from your ip, hint: [%s], from ip: %s, more info at https://open.work.weixin.qq.com/devtool/query?e=60020", newRID(), ip))
		return
	}
	now := s.Now()
	s.rollDay(st, now)
	if s.cfg.WeComDailyQuota > 0 && st.dailyCalls[WeComAPI] >= s.cfg.WeComDailyQuota {
		writeErr(w, 45009, "api freq out of limit")
		return
	}
	st.dailyCalls[WeComAPI]++
	writeToken(w, s.issueLocked(st, WeComAPI, now), now, true)
}

// --- business endpoint

func (s *Sandbox) serveBusiness(w http.ResponseWriter, r *http.Request) {
	if s.acceptToken(w, r.URL.Query().Get("access_token")) {
		writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok", "ip_list": []string{"101.226.103.0/25", "101.226.233.128/25"}})
	}
}

// acceptToken reports whether token is one a call that needs an access
// token accepts (Check), and otherwise answers the errcode WeChat answers.
func (s *Sandbox) acceptToken(w http.ResponseWriter, token string) bool {
	switch s.Check(token) {
	case 0:
		return true
	case 41001:
		writeErr(w, 41001, "access_token missing")
	case 40014:
		writeErr(w, 40014, "invalid access_token")
	case 42001:
		writeErr(w, 42001, "access_token expired")
	default:
		writeErr(w, 40001, "invalid credential, access_token is invalid or not latest")
	}
	return false
}

// --- quota management

// Error is an errcode the sandbox answers to a Go call (ClearQuota), as it
// would over HTTP.
type Error struct {
	Code int
	Msg  string
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("wechattest: errcode %d: %s", e.Code, e.Msg) }

// ClearQuota is clear_quota done by the account's operator (in the MP
// console or with the API): it resets the app's daily API call counts, so
// that a 45009 ends before midnight Beijing time. The counts reset are every
// daily quota the sandbox keeps: /cgi-bin/token, stable_token (normal mode),
// gettoken, and the daily count of force_refresh calls (stable_token's error
// table says its 45009, the force_refresh limit's answer included, is
// recovered with clear_quota). Neither the 30 s spacing of force_refresh nor
// the per-minute quota is a daily count; they are left alone. Tokens are
// untouched.
//
// WeChat allows 10 effective resets per account per month (console resets
// count too): past Config.ClearQuotaMonthlyLimit it returns an *Error with
// 48006 and resets nothing. An unknown appid is an *Error with 40013.
func (s *Sandbox) ClearQuota(appID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.apps[appID]
	if !ok {
		return &Error{Code: 40013, Msg: "invalid appid"}
	}
	return s.clearQuotaLocked(st, s.Now())
}

func (s *Sandbox) clearQuotaLocked(st *appState, now time.Time) error {
	if month := now.In(beijing).Format("2006-01"); month != st.clearMonth {
		st.clearMonth, st.clears = month, 0
	}
	if st.clears >= s.cfg.ClearQuotaMonthlyLimit {
		return &Error{Code: 48006, Msg: "forbid to clear quota because of reaching the limit"}
	}
	st.clears++
	s.rollDay(st, now)
	st.dailyCalls = map[API]int{}
	st.forceCount = 0
	return nil
}

// serveClearQuota is POST /cgi-bin/clear_quota?access_token=... with the body
// {"appid":"..."}: the token must be a valid one of the account named.
func (s *Sandbox) serveClearQuota(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		writeErr(w, 43002, "require POST method")
		return
	}
	if !s.acceptToken(w, r.URL.Query().Get("access_token")) {
		return
	}
	var req struct {
		AppID string `json:"appid"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeErr(w, 47001, "data format error")
		return
	}
	if req.AppID == "" {
		writeErr(w, 41002, "appid missing")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.tokens[r.URL.Query().Get("access_token")]
	st, ok := s.apps[req.AppID]
	if rec == nil || !ok || rec.appID != req.AppID {
		writeErr(w, 40013, "invalid appid")
		return
	}
	if st.app.Kind == WeCom {
		// clear_quota is an Official Account / Mini Program API.
		writeErr(w, 48001, "api unauthorized")
		return
	}
	var e *Error
	if err := s.clearQuotaLocked(st, s.Now()); errors.As(err, &e) {
		writeErr(w, e.Code, e.Msg)
		return
	}
	writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok"})
}

// clearV2Request is clear_quota/v2's parameters.
type clearV2Request struct {
	AppID     string `json:"appid"`
	AppSecret string `json:"appsecret"`
}

// clearV2Params reads clear_quota/v2's appid and appsecret. WeChat's pages
// disagree on where they go (newer ones: the JSON body; older ones and the
// SDKs: the query string), so both are accepted, the query string first.
func clearV2Params(q url.Values, body []byte) clearV2Request {
	var req clearV2Request
	_ = json.Unmarshal(body, &req)
	if v := q.Get("appid"); v != "" {
		req.AppID = v
	}
	if v := q.Get("appsecret"); v != "" {
		req.AppSecret = v
	}
	return req
}

// serveClearQuotaV2 is POST /cgi-bin/clear_quota/v2 (clearQuotaByAppSecret):
// clear_quota by appid and AppSecret, sharing the 10 resets a month. Its
// documented errors are -1, 40013, 41002, 41004 and 48006. Two answers are
// the sandbox's own, where WeChat documents nothing: 40125 for a wrong
// secret, as the token API answers, and the IP whitelist, which WeChat
// presumably applies to every call that carries the secret (unconfirmed;
// wxtoken's functions never make this call, the operator does).
func (s *Sandbox) serveClearQuotaV2(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		writeErr(w, 43002, "require POST method")
		return
	}
	req := clearV2Params(r.URL.Query(), body)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.accountLocked(w, r, req.AppID, req.AppSecret, 40125, "invalid appsecret")
	if st == nil {
		return
	}
	var e *Error
	if err := s.clearQuotaLocked(st, s.Now()); errors.As(err, &e) {
		writeErr(w, e.Code, e.Msg)
		return
	}
	writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok"})
}

// --- state helpers (s.mu held)

// accountLocked checks the account of an Official Account / Mini Program
// call that carries the secret — the appid and the secret given, the appid,
// the secret (a wrong one is answered wrongCode, wrongMsg: the APIs differ)
// and the IP whitelist — and answers the first failure, returning nil; or
// returns the account.
func (s *Sandbox) accountLocked(w http.ResponseWriter, r *http.Request, appID, secret string, wrongCode int, wrongMsg string) *appState {
	st, ok := s.apps[appID]
	switch {
	case appID == "":
		writeErr(w, 41002, "appid missing")
	case secret == "":
		writeErr(w, 41004, "appsecret missing")
	case !ok || st.app.Kind == WeCom:
		writeErr(w, 40013, "invalid appid")
	case secret != st.app.Secret:
		writeErr(w, wrongCode, wrongMsg)
	default:
		if ip, refused := denied(st.app, r); refused {
			writeErr(w, 40164, whitelistMsg(ip))
			return nil
		}
		return st
	}
	return nil
}

func (s *Sandbox) issueLocked(st *appState, api API, now time.Time) *tokenRec {
	tok := newToken(s.cfg.TokenLength)
	leakscan.Record(leakscan.Token, tok)
	rec := &tokenRec{token: tok, appID: st.app.AppID, api: api, issuedAt: now, expiresAt: now.Add(s.cfg.TokenLifetime)}
	s.tokens[tok] = rec
	st.current[api] = rec
	st.tokensIssued++
	return rec
}

// revokeLocked invalidates at now every valid token of appID issued by api,
// except keep.
func (s *Sandbox) revokeLocked(appID string, api API, now time.Time, keep *tokenRec) {
	for _, r := range s.tokens {
		if r != keep && r.appID == appID && r.api == api && r.validAt(now) {
			r.revokedAt = now
		}
	}
}

// rollDay resets the daily counters when the Beijing date changes.
func (s *Sandbox) rollDay(st *appState, now time.Time) {
	day := now.In(beijing).Format(time.DateOnly)
	if day != st.day {
		st.day = day
		st.dailyCalls = map[API]int{}
		st.forceCount = 0
	}
}

var beijing = time.FixedZone("CST", 8*3600)

// denied reports whether the caller's IP is outside the app's whitelist, and
// the IP.
func denied(a App, r *http.Request) (string, bool) {
	ip := r.RemoteAddr
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	if len(a.AllowedIPs) == 0 {
		return ip, false
	}
	for _, allowed := range a.AllowedIPs {
		if allowed == ip {
			return ip, false
		}
	}
	return ip, true
}

// whitelistMsg is WeChat's 40164 wording, which quotes the caller's IPv4
// address and its IPv6 form.
func whitelistMsg(ip string) string {
	if parsed := net.ParseIP(ip); parsed != nil && parsed.To4() == nil {
		return fmt.Sprintf("invalid ip  ipv6 %s, not in whitelist", ip)
	}
	return fmt.Sprintf("invalid ip %s ipv6 ::ffff:%s, not in whitelist", ip, ip)
}

// --- encoding

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	_, _ = w.Write(buf.Bytes())
}

// writeErr answers an errcode with HTTP 200, as WeChat does.
func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, map[string]any{"errcode": code, "errmsg": msg + " rid: " + newRID()})
}

func writeToken(w http.ResponseWriter, rec *tokenRec, now time.Time, wecom bool) {
	remaining := int64(math.Ceil(rec.expiresAt.Sub(now).Seconds()))
	tok := rec.token
	if wecom {
		writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": remaining})
		return
	}
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": remaining})
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

func newToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = tokenAlphabet[int(b[i])%len(tokenAlphabet)]
	}
	// Real tokens start with a digit and a letter pattern; ours start with a
	// digit too, so nothing may assume otherwise.
	b[0] = '0' + b[0]%10
	return string(b)
}

func newRID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:16] + "-" + h[16:24]
}
