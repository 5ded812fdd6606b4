package wechattest_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const (
	oaID, oaSecret = "wx00000000000000a1", "oa-secret-0123456789abcdef01234567"
	mpID, mpSecret = "wx00000000000000b2", "mp-secret-0123456789abcdef01234567"
	wwID, wwSecret = "ww00000000000000c3", "ww-secret-0123456789abcdef01234567"
)

// start returns a sandbox with a frozen clock (time moves only by Advance)
// and one app of each kind.
func start(t *testing.T, cfg wechattest.Config, extra ...wechattest.App) *wechattest.Server {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = wechattest.NewClock(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), 0)
	}
	apps := append([]wechattest.App{
		{AppID: oaID, Secret: oaSecret, Kind: wechattest.OfficialAccount},
		{AppID: mpID, Secret: mpSecret, Kind: wechattest.MiniProgram},
		{AppID: wwID, Secret: wwSecret, Kind: wechattest.WeCom},
	}, extra...)
	srv := wechattest.NewServer(cfg, apps...)
	t.Cleanup(srv.Close)
	return srv
}

// answer is a decoded WeChat answer.
type answer struct {
	ErrCode     int    `json:"errcode"`
	ErrMsg      string `json:"errmsg"`
	AccessToken string `json:"access_token"`
	Ticket      string `json:"ticket"`
	ExpiresIn   int64  `json:"expires_in"`
}

func do(t *testing.T, method, u, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: HTTP %d %s", u, resp.StatusCode, raw)
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s: not JSON: %s", u, raw)
	}
	return a
}

func classic(t *testing.T, s *wechattest.Server, appid, secret string) answer {
	t.Helper()
	q := url.Values{"grant_type": {"client_credential"}, "appid": {appid}, "secret": {secret}}
	return do(t, http.MethodGet, s.URL+"/cgi-bin/token?"+q.Encode(), "")
}

func stable(t *testing.T, s *wechattest.Server, appid, secret string, force bool) answer {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": force})
	return do(t, http.MethodPost, s.URL+"/cgi-bin/stable_token", string(b))
}

func wecom(t *testing.T, s *wechattest.Server, corpid, secret string) answer {
	t.Helper()
	q := url.Values{"corpid": {corpid}, "corpsecret": {secret}}
	return do(t, http.MethodGet, s.URL+"/cgi-bin/gettoken?"+q.Encode(), "")
}

// business is the errcode the business endpoint answers for token.
func business(t *testing.T, s *wechattest.Server, token string) int {
	t.Helper()
	return do(t, http.MethodGet, s.URL+"/cgi-bin/get_api_domain_ip?access_token="+url.QueryEscape(token), "").ErrCode
}

func mustToken(t *testing.T, a answer) string {
	t.Helper()
	if a.ErrCode != 0 || a.AccessToken == "" {
		t.Fatalf("want a token, got errcode %d %q", a.ErrCode, a.ErrMsg)
	}
	return a.AccessToken
}

func wantCode(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s: errcode %d, want %d", what, got, want)
	}
}

func TestClassicTokenSupersededAfterGrace(t *testing.T) {
	s := start(t, wechattest.Config{})
	a := classic(t, s, oaID, oaSecret)
	tokA := mustToken(t, a)
	if a.ExpiresIn != 7200 {
		t.Errorf("expires_in = %d, want 7200", a.ExpiresIn)
	}
	if len(tokA) < 512 {
		t.Errorf("token length %d, want at least 512 (WeChat reserves 512)", len(tokA))
	}
	wantCode(t, "fresh token", business(t, s, tokA), 0)

	s.Clock().Advance(10 * time.Minute)
	tokB := mustToken(t, classic(t, s, oaID, oaSecret))
	if tokB == tokA {
		t.Fatal("second fetch returned the same token; classic fetch must issue a new one")
	}
	wantCode(t, "old token inside grace", business(t, s, tokA), 0)
	wantCode(t, "new token", business(t, s, tokB), 0)

	s.Clock().Advance(300*time.Second - time.Second)
	wantCode(t, "old token 1 s before grace ends", business(t, s, tokA), 0)
	s.Clock().Advance(time.Second)
	wantCode(t, "old token when grace ends", business(t, s, tokA), 40001)
	wantCode(t, "new token after grace", business(t, s, tokB), 0)

	s.Clock().Advance(7200*time.Second - 300*time.Second)
	wantCode(t, "new token at its expiry", business(t, s, tokB), 42001)
}

func TestClassicOnlyNewAndOldOverlap(t *testing.T) {
	s := start(t, wechattest.Config{})
	a := mustToken(t, classic(t, s, oaID, oaSecret))
	s.Clock().Advance(10 * time.Second)
	b := mustToken(t, classic(t, s, oaID, oaSecret))
	s.Clock().Advance(10 * time.Second)
	c := mustToken(t, classic(t, s, oaID, oaSecret))
	wantCode(t, "token two fetches old", business(t, s, a), 40001)
	wantCode(t, "previous token", business(t, s, b), 0)
	wantCode(t, "current token", business(t, s, c), 0)
	if n := s.Stats().ValidTokens[oaID]; n != 2 {
		t.Errorf("%d valid tokens after three fetches, want 2 (new and old)", n)
	}
}

func TestForceRefreshKillsTokenLivingOutItsLife(t *testing.T) {
	s := start(t, wechattest.Config{})
	a := mustToken(t, stable(t, s, oaID, oaSecret, false))
	s.Clock().Advance(7200*time.Second - 200*time.Second) // inside the final window
	b := mustToken(t, stable(t, s, oaID, oaSecret, false))
	if a == b {
		t.Fatal("no rotation inside the final window")
	}
	wantCode(t, "old token living out its life", business(t, s, a), 0)
	mustToken(t, stable(t, s, oaID, oaSecret, true))
	wantCode(t, "old token after force_refresh", business(t, s, a), 40001)
	wantCode(t, "rotated token after force_refresh", business(t, s, b), 40001)
}

func TestStableNormalModeRotatesInFinalWindow(t *testing.T) {
	s := start(t, wechattest.Config{})
	first := stable(t, s, oaID, oaSecret, false)
	tokA := mustToken(t, first)
	if first.ExpiresIn != 7200 {
		t.Fatalf("first expires_in = %d, want 7200", first.ExpiresIn)
	}

	steps := []struct {
		advance     time.Duration
		wantSame    bool
		wantExpires int64
	}{
		{1000 * time.Second, true, 6200},
		{5899 * time.Second, true, 301}, // 301 s left: not yet in the window
		{1 * time.Second, false, 7200},  // 300 s left: inside the final window
		{10 * time.Second, true, 7190},  // the new token is now the current one
	}
	cur := tokA
	for i, st := range steps {
		s.Clock().Advance(st.advance)
		a := stable(t, s, oaID, oaSecret, false)
		tok := mustToken(t, a)
		if same := tok == cur; same != st.wantSame {
			t.Fatalf("step %d: same token = %v, want %v", i, same, st.wantSame)
		}
		if a.ExpiresIn != st.wantExpires {
			t.Errorf("step %d: expires_in = %d, want %d (remaining life)", i, a.ExpiresIn, st.wantExpires)
		}
		cur = tok
	}
	// The old token lives out its life (it had 290 s left), then expires.
	wantCode(t, "old stable token after rotation", business(t, s, tokA), 0)
	s.Clock().Advance(289 * time.Second)
	wantCode(t, "old stable token 1 s before expiry", business(t, s, tokA), 0)
	s.Clock().Advance(time.Second)
	wantCode(t, "old stable token at expiry", business(t, s, tokA), 42001)
	wantCode(t, "new stable token", business(t, s, cur), 0)
}

func TestStableForceRefresh(t *testing.T) {
	s := start(t, wechattest.Config{ForceRefreshDailyLimit: 3})
	tokA := mustToken(t, stable(t, s, oaID, oaSecret, false))
	tokB := mustToken(t, stable(t, s, oaID, oaSecret, true))
	if tokB == tokA {
		t.Fatal("force_refresh returned the same token")
	}
	wantCode(t, "token replaced by force_refresh", business(t, s, tokA), 40001)
	wantCode(t, "forced token", business(t, s, tokB), 0)

	s.Clock().Advance(29 * time.Second)
	if got := mustToken(t, stable(t, s, oaID, oaSecret, true)); got != tokB {
		t.Error("force_refresh 29 s after the last one refreshed; WeChat does not refresh within 30 s")
	}
	s.Clock().Advance(time.Second)
	tokC := mustToken(t, stable(t, s, oaID, oaSecret, true))
	if tokC == tokB {
		t.Fatal("force_refresh 30 s after the last one did not refresh")
	}
	wantCode(t, "second forced-out token", business(t, s, tokB), 40001)

	s.Clock().Advance(30 * time.Second)
	mustToken(t, stable(t, s, oaID, oaSecret, true)) // third of 3
	s.Clock().Advance(30 * time.Second)
	wantCode(t, "fourth force_refresh of the day (limit 3)", stable(t, s, oaID, oaSecret, true).ErrCode, 45009)
	// Normal mode still works when force is exhausted.
	mustToken(t, stable(t, s, oaID, oaSecret, false))

	s.Clock().Advance(24 * time.Hour)
	mustToken(t, stable(t, s, oaID, oaSecret, true))
}

func TestClassicAndStableAreIsolated(t *testing.T) {
	s := start(t, wechattest.Config{})
	st := mustToken(t, stable(t, s, oaID, oaSecret, false))
	c1 := mustToken(t, classic(t, s, oaID, oaSecret))
	for i := 0; i < 3; i++ {
		mustToken(t, classic(t, s, oaID, oaSecret))
	}
	s.Clock().Advance(301 * time.Second)
	wantCode(t, "stable token after classic fetches", business(t, s, st), 0)
	wantCode(t, "superseded classic token", business(t, s, c1), 40001)

	c5 := mustToken(t, classic(t, s, oaID, oaSecret))
	mustToken(t, stable(t, s, oaID, oaSecret, true))
	wantCode(t, "classic token after a stable force_refresh", business(t, s, c5), 0)
	if got := mustToken(t, stable(t, s, oaID, oaSecret, false)); got == c5 {
		t.Error("stable_token returned the classic token")
	}
}

func TestWeComGetToken(t *testing.T) {
	s := start(t, wechattest.Config{})
	raw := func(q url.Values) map[string]any {
		resp, err := http.Get(s.URL + "/cgi-bin/gettoken?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	ok := raw(url.Values{"corpid": {wwID}, "corpsecret": {wwSecret}})
	if ok["errcode"] != float64(0) || ok["errmsg"] != "ok" || ok["expires_in"] != float64(7200) || ok["access_token"] == "" {
		t.Errorf("gettoken answer = %v, want errcode 0, errmsg ok, a token and expires_in 7200", ok)
	}
	tok1 := mustToken(t, wecom(t, s, wwID, wwSecret))
	tok2 := mustToken(t, wecom(t, s, wwID, wwSecret))
	if tok1 == tok2 {
		t.Error("gettoken returned the same token twice")
	}
	wantCode(t, "earlier WeCom token", business(t, s, tok1), 0)
	s.Revoke(wwID)
	wantCode(t, "WeCom token after early invalidation", business(t, s, tok2), 40001)
}

func TestParameterErrors(t *testing.T) {
	s := start(t, wechattest.Config{})
	tokenURL := func(kv ...string) string {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return s.URL + "/cgi-bin/token?" + q.Encode()
	}
	stableBody := func(m map[string]any) string { b, _ := json.Marshal(m); return string(b) }
	tests := []struct {
		name   string
		method string
		url    string
		body   string
		want   int
	}{
		{"token: no grant_type", "GET", tokenURL("appid", oaID, "secret", oaSecret), "", 40002},
		{"token: wrong grant_type", "GET", tokenURL("grant_type", "password", "appid", oaID, "secret", oaSecret), "", 40002},
		{"token: no appid", "GET", tokenURL("grant_type", "client_credential", "secret", oaSecret), "", 41002},
		{"token: no secret", "GET", tokenURL("grant_type", "client_credential", "appid", oaID), "", 41004},
		{"token: unknown appid", "GET", tokenURL("grant_type", "client_credential", "appid", "wxnope", "secret", oaSecret), "", 40013},
		{"token: wrong secret", "GET", tokenURL("grant_type", "client_credential", "appid", oaID, "secret", "wrong"), "", 40001},
		{"token: WeCom corpid", "GET", tokenURL("grant_type", "client_credential", "appid", wwID, "secret", wwSecret), "", 40013},
		{"token: POST", "POST", tokenURL("grant_type", "client_credential", "appid", oaID, "secret", oaSecret), "", 43001},
		{"stable: GET", "GET", s.URL + "/cgi-bin/stable_token", "", 43002},
		{"stable: not JSON", "POST", s.URL + "/cgi-bin/stable_token", "grant_type=client_credential", 47001},
		{"stable: wrong grant_type", "POST", s.URL + "/cgi-bin/stable_token", stableBody(map[string]any{"grant_type": "x", "appid": oaID, "secret": oaSecret}), 40002},
		{"stable: no appid", "POST", s.URL + "/cgi-bin/stable_token", stableBody(map[string]any{"grant_type": "client_credential", "secret": oaSecret}), 41002},
		{"stable: no secret", "POST", s.URL + "/cgi-bin/stable_token", stableBody(map[string]any{"grant_type": "client_credential", "appid": oaID}), 41004},
		{"stable: unknown appid", "POST", s.URL + "/cgi-bin/stable_token", stableBody(map[string]any{"grant_type": "client_credential", "appid": "wxnope", "secret": oaSecret}), 40013},
		{"stable: wrong secret", "POST", s.URL + "/cgi-bin/stable_token", stableBody(map[string]any{"grant_type": "client_credential", "appid": oaID, "secret": "wrong"}), 40125},
		{"gettoken: no corpid", "GET", s.URL + "/cgi-bin/gettoken?corpsecret=" + wwSecret, "", 41002},
		{"gettoken: no corpsecret", "GET", s.URL + "/cgi-bin/gettoken?corpid=" + wwID, "", 41004},
		{"gettoken: unknown corpid", "GET", s.URL + "/cgi-bin/gettoken?corpid=wwnope&corpsecret=" + wwSecret, "", 40013},
		{"gettoken: official account appid", "GET", s.URL + "/cgi-bin/gettoken?corpid=" + oaID + "&corpsecret=" + oaSecret, "", 40013},
		{"gettoken: wrong corpsecret", "GET", s.URL + "/cgi-bin/gettoken?corpid=" + wwID + "&corpsecret=wrong", "", 40001},
		{"business: no token", "GET", s.URL + "/cgi-bin/get_api_domain_ip", "", 41001},
		{"business: garbage token", "GET", s.URL + "/cgi-bin/get_api_domain_ip?access_token=garbage", "", 40014},
		{"business: garbage token on getcallbackip", "GET", s.URL + "/cgi-bin/getcallbackip?access_token=garbage", "", 40014},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, tt.method, tt.url, tt.body)
			wantCode(t, tt.name, a.ErrCode, tt.want)
			if a.AccessToken != "" {
				t.Error("an error answer carried a token")
			}
			if !strings.Contains(a.ErrMsg, " rid: ") {
				t.Errorf("errmsg %q lacks WeChat's rid suffix", a.ErrMsg)
			}
		})
	}
	if n := s.TokensIssued(oaID) + s.TokensIssued(wwID); n != 0 {
		t.Errorf("%d tokens issued by failing calls, want 0", n)
	}
}

func TestDailyAndMinuteQuotas(t *testing.T) {
	// 15:59:00 UTC is 23:59 in Beijing: the quotas reset a minute later.
	clock := wechattest.NewClock(time.Date(2026, 11, 21, 15, 58, 0, 0, time.UTC), 0)
	s := start(t, wechattest.Config{Clock: clock, ClassicDailyQuota: 3, StableDailyQuota: 4, StableMinuteQuota: 2})

	for i := 0; i < 3; i++ {
		mustToken(t, classic(t, s, oaID, oaSecret))
	}
	wantCode(t, "4th classic call of the day (quota 3)", classic(t, s, oaID, oaSecret).ErrCode, 45009)
	mustToken(t, classic(t, s, mpID, mpSecret)) // quotas are per app

	mustToken(t, stable(t, s, oaID, oaSecret, false))
	mustToken(t, stable(t, s, oaID, oaSecret, false))
	wantCode(t, "3rd stable call in a minute (quota 2)", stable(t, s, oaID, oaSecret, false).ErrCode, 45011)
	clock.Advance(60 * time.Second)
	mustToken(t, stable(t, s, oaID, oaSecret, false))
	wantCode(t, "classic quota still exhausted before midnight Beijing", classic(t, s, oaID, oaSecret).ErrCode, 45009)
	clock.Advance(60 * time.Second) // 16:00 UTC = 00:00 Beijing
	mustToken(t, classic(t, s, oaID, oaSecret))
	mustToken(t, stable(t, s, oaID, oaSecret, false))
	mustToken(t, stable(t, s, oaID, oaSecret, false))
	clock.Advance(60 * time.Second)
	mustToken(t, stable(t, s, oaID, oaSecret, false))
	mustToken(t, stable(t, s, oaID, oaSecret, false))
	clock.Advance(60 * time.Second)
	wantCode(t, "5th stable call of the day (quota 4)", stable(t, s, oaID, oaSecret, false).ErrCode, 45009)
}

func TestWeComQuotaIsOptional(t *testing.T) {
	unlimited := start(t, wechattest.Config{})
	for i := 0; i < 30; i++ {
		mustToken(t, wecom(t, unlimited, wwID, wwSecret))
	}
	limited := start(t, wechattest.Config{WeComDailyQuota: 2})
	mustToken(t, wecom(t, limited, wwID, wwSecret))
	mustToken(t, wecom(t, limited, wwID, wwSecret))
	wantCode(t, "3rd gettoken of the day (quota 2)", wecom(t, limited, wwID, wwSecret).ErrCode, 45009)
}

func TestIPWhitelist(t *testing.T) {
	s := start(t, wechattest.Config{},
		wechattest.App{AppID: "wxlocked", Secret: "locked-secret", Kind: wechattest.OfficialAccount, AllowedIPs: []string{"203.0.113.9"}},
		wechattest.App{AppID: "wwlocked", Secret: "locked-secret", Kind: wechattest.WeCom, AllowedIPs: []string{"203.0.113.9"}},
		wechattest.App{AppID: "wxopen", Secret: "open-secret", Kind: wechattest.MiniProgram, AllowedIPs: []string{"203.0.113.9", "127.0.0.1"}},
	)
	tests := []struct {
		name string
		a    answer
		want int
	}{
		{"classic", classic(t, s, "wxlocked", "locked-secret"), 40164},
		{"stable", stable(t, s, "wxlocked", "locked-secret", false), 40164},
		{"wecom", wecom(t, s, "wwlocked", "locked-secret"), 60020},
	}
	for _, tt := range tests {
		wantCode(t, tt.name, tt.a.ErrCode, tt.want)
		if !strings.Contains(tt.a.ErrMsg, "127.0.0.1") {
			t.Errorf("%s: errmsg %q does not quote the caller's IP", tt.name, tt.a.ErrMsg)
		}
	}
	mustToken(t, classic(t, s, "wxopen", "open-secret"))
}

// clearQuota calls POST /cgi-bin/clear_quota with token for appid.
func clearQuota(t *testing.T, s *wechattest.Server, token, appid string) answer {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"appid": appid})
	return do(t, http.MethodPost, s.URL+"/cgi-bin/clear_quota?access_token="+url.QueryEscape(token), string(b))
}

// wantSandboxErr checks that err is a *wechattest.Error with code.
func wantSandboxErr(t *testing.T, what string, err error, code int) {
	t.Helper()
	var e *wechattest.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Errorf("%s: %v, want errcode %d", what, err, code)
	}
}

// TestClearQuota: clear_quota (the operator's, from Go, and the API's, over
// HTTP) resets an account's daily call counts, the force_refresh count
// included, at most 10 times a month per account.
func TestClearQuota(t *testing.T) {
	// 2026-11-21 10:00 UTC is 18:00 in Beijing: no daily reset here.
	s := start(t, wechattest.Config{ClassicDailyQuota: 1, ForceRefreshDailyLimit: 1})
	tokA := mustToken(t, classic(t, s, oaID, oaSecret))
	wantCode(t, "2nd classic call of the day (quota 1)", classic(t, s, oaID, oaSecret).ErrCode, 45009)
	mustToken(t, stable(t, s, oaID, oaSecret, true))
	s.Clock().Advance(31 * time.Second)
	wantCode(t, "2nd force_refresh of the day (limit 1)", stable(t, s, oaID, oaSecret, true).ErrCode, 45009)

	if err := s.ClearQuota(oaID); err != nil {
		t.Fatalf("ClearQuota: %v", err)
	}
	tokB := mustToken(t, classic(t, s, oaID, oaSecret))
	wantCode(t, "token issued before the reset", business(t, s, tokA), 0) // tokens untouched
	mustToken(t, stable(t, s, oaID, oaSecret, true))
	wantCode(t, "classic quota used up again", classic(t, s, oaID, oaSecret).ErrCode, 45009)
	wantSandboxErr(t, "ClearQuota of an unknown appid", s.ClearQuota("wxnobody"), 40013)

	// Over HTTP: a valid token of the account named in the body.
	before := s.Calls(wechattest.PathClearQuota, oaID)
	wantCode(t, "clear_quota", clearQuota(t, s, tokB, oaID).ErrCode, 0)
	if got := s.Calls(wechattest.PathClearQuota, oaID) - before; got != 1 {
		t.Errorf("%d clear_quota calls counted for the token's appid, want 1", got)
	}
	mustToken(t, classic(t, s, oaID, oaSecret))
	mpTok := mustToken(t, classic(t, s, mpID, mpSecret))
	wantCode(t, "clear_quota with another account's token", clearQuota(t, s, mpTok, oaID).ErrCode, 40013)
	wantCode(t, "clear_quota without a token", clearQuota(t, s, "", oaID).ErrCode, 41001)
	wantCode(t, "clear_quota with a token never issued", clearQuota(t, s, "not-a-token", oaID).ErrCode, 40014)
	wantCode(t, "clear_quota without appid", do(t, http.MethodPost, s.URL+"/cgi-bin/clear_quota?access_token="+url.QueryEscape(mpTok), "{}").ErrCode, 41002)
	wantCode(t, "clear_quota by GET", do(t, http.MethodGet, s.URL+"/cgi-bin/clear_quota?access_token="+url.QueryEscape(mpTok), "").ErrCode, 43002)
	wwTok := mustToken(t, wecom(t, s, wwID, wwSecret))
	wantCode(t, "clear_quota for a WeCom corp", clearQuota(t, s, wwTok, wwID).ErrCode, 48001)
	wantCode(t, "classic quota not reset by refused calls", classic(t, s, oaID, oaSecret).ErrCode, 45009)

	// Ten effective resets a month per account, Go and HTTP together (two
	// so far); the refused ones above did not count.
	for i := 3; i <= 10; i++ {
		if err := s.ClearQuota(oaID); err != nil {
			t.Fatalf("reset %d of the month: %v", i, err)
		}
	}
	wantSandboxErr(t, "11th reset of the month", s.ClearQuota(oaID), 48006)
	tokC, _ := s.Current(oaID, wechattest.Classic)
	wantCode(t, "11th reset of the month over HTTP", clearQuota(t, s, tokC, oaID).ErrCode, 48006)
	if err := s.ClearQuota(mpID); err != nil {
		t.Errorf("another account's first reset: %v", err)
	}
	mustToken(t, classic(t, s, oaID, oaSecret)) // the 10th reset left the quota empty
	wantCode(t, "no reset past the limit", classic(t, s, oaID, oaSecret).ErrCode, 45009)

	// 2026-12-01 00:00 in Beijing: a new month.
	s.Clock().Set(time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC))
	mustToken(t, classic(t, s, oaID, oaSecret)) // new day
	wantCode(t, "classic quota used up on the new day", classic(t, s, oaID, oaSecret).ErrCode, 45009)
	if err := s.ClearQuota(oaID); err != nil {
		t.Errorf("first reset of a new month: %v", err)
	}
	mustToken(t, classic(t, s, oaID, oaSecret))
}

func TestFaults(t *testing.T) {
	s := start(t, wechattest.Config{})
	s.Inject(wechattest.Fault{Path: wechattest.PathToken, AppID: oaID, ErrCode: -1, Times: 2})
	wantCode(t, "1st faulted call", classic(t, s, oaID, oaSecret).ErrCode, -1)
	mustToken(t, classic(t, s, mpID, mpSecret)) // other app unaffected
	mustToken(t, stable(t, s, oaID, oaSecret, false))
	wantCode(t, "2nd faulted call", classic(t, s, oaID, oaSecret).ErrCode, -1)
	mustToken(t, classic(t, s, oaID, oaSecret))

	// A fresh connection per call: Go's transport silently retries a GET
	// whose reused connection closes, which would hide a dropped one.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (*http.Response, error) {
		q := url.Values{"grant_type": {"client_credential"}, "appid": {oaID}, "secret": {oaSecret}}
		return fresh.Get(s.URL + "/cgi-bin/token?" + q.Encode())
	}
	s.Inject(wechattest.Fault{Status: 503, Times: 1})
	resp, err := get()
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("status fault: %v %v", resp, err)
	}
	resp.Body.Close()

	s.Inject(wechattest.Fault{Body: "<html><body>502 Bad Gateway</body></html>", ContentType: "text/html", Times: 1})
	resp, err = get()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "<html>") || resp.Header.Get("Content-Type") != "text/html" {
		t.Errorf("body fault answered %q (%s)", b, resp.Header.Get("Content-Type"))
	}

	s.Inject(wechattest.Fault{Drop: true, Times: 1})
	if resp, err := get(); err == nil {
		resp.Body.Close()
		t.Error("dropped connection produced an answer")
	}

	s.Inject(wechattest.Fault{Latency: wechattest.Duration(150 * time.Millisecond), Times: 1})
	began := time.Now()
	mustToken(t, classic(t, s, oaID, oaSecret))
	if d := time.Since(began); d < 150*time.Millisecond {
		t.Errorf("latency fault answered after %v, want at least 150ms", d)
	}

	s.Inject(wechattest.Fault{ErrCode: 45011, Fraction: 0.5})
	faulted := 0
	for i := 0; i < 200; i++ {
		if stable(t, s, mpID, mpSecret, false).ErrCode == 45011 {
			faulted++
		}
	}
	s.ClearFaults()
	if faulted < 50 || faulted > 150 {
		t.Errorf("fraction 0.5 fired %d times in 200 calls", faulted)
	}
	mustToken(t, stable(t, s, mpID, mpSecret, false))
}

func TestStatsAndAdminRoutes(t *testing.T) {
	s := start(t, wechattest.Config{})
	post := func(path, body string) int {
		resp, err := http.Post(s.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/_sandbox/apps", `{"appid":"wxadded","secret":"added-secret","kind":"miniprogram"}`); code != 200 {
		t.Fatalf("POST /_sandbox/apps: %d", code)
	}
	if code := post("/_sandbox/apps", `{"appid":"wxbad","secret":"x","kind":"bogus"}`); code != 400 {
		t.Errorf("bad kind accepted: %d", code)
	}
	if code := post("/_sandbox/faults", `{"errcode":-1,"times":1,"bogus":true}`); code != 400 {
		t.Errorf("unknown field accepted: %d", code)
	}
	tok1 := mustToken(t, classic(t, s, "wxadded", "added-secret"))
	mustToken(t, classic(t, s, "wxadded", "added-secret"))
	mustToken(t, stable(t, s, "wxadded", "added-secret", false))
	business(t, s, tok1)

	if code := post("/_sandbox/faults", `{"path":"/cgi-bin/token","errcode":40243,"times":1}`); code != 200 {
		t.Fatalf("POST /_sandbox/faults: %d", code)
	}
	wantCode(t, "fault over HTTP", classic(t, s, "wxadded", "added-secret").ErrCode, 40243)
	if code := post("/_sandbox/clock", `{"advance":"301s"}`); code != 200 {
		t.Fatalf("POST /_sandbox/clock: %d", code)
	}

	resp, err := http.Get(s.URL + "/_sandbox/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st wechattest.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want int
	}{
		{"token calls", st.Calls["/cgi-bin/token"]["wxadded"], 3},
		{"stable calls", st.Calls["/cgi-bin/stable_token"]["wxadded"], 1},
		{"business calls", st.Calls["/cgi-bin/get_api_domain_ip"]["wxadded"], 1},
		{"tokens issued", st.TokensIssued["wxadded"], 3},
		// the first classic token is past its grace; the second and the stable one remain
		{"valid tokens", st.ValidTokens["wxadded"], 2},
		{"TokenCalls", s.TokenCalls("wxadded"), 4},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if want := time.Date(2026, 11, 21, 10, 5, 1, 0, time.UTC); !st.Now.Equal(want) {
		t.Errorf("stats now = %v, want %v", st.Now, want)
	}
	if n := len(s.Issued()); n != 3 {
		t.Errorf("Issued() lists %d tokens, want 3", n)
	}
	if cur, _ := s.Current("wxadded", wechattest.Stable); s.Check(cur) != 0 {
		t.Error("Current(stable) is not a valid token")
	}
}

func TestClockSpeed(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := wechattest.NewClock(start, 0)
	if !c.Now().Equal(start) {
		t.Fatalf("frozen clock moved: %v", c.Now())
	}
	c.Advance(time.Hour)
	if got := c.Now().Sub(start); got != time.Hour {
		t.Errorf("after Advance(1h): %v", got)
	}
	c.SetSpeed(3600) // an hour per real second
	time.Sleep(20 * time.Millisecond)
	if got := c.Now().Sub(start); got < time.Hour+time.Minute {
		t.Errorf("clock at speed 3600 advanced only to %v after 20ms", got)
	}
}

// TestClearQuotaV2: clear_quota/v2 resets the daily counts by appid and
// AppSecret, without a token, with its parameters in the query string or
// the body, and shares the monthly limit with clear_quota.
func TestClearQuotaV2(t *testing.T) {
	s := start(t, wechattest.Config{ClassicDailyQuota: 1, ClearQuotaMonthlyLimit: 2})
	v2 := func(query, body string) answer {
		return do(t, http.MethodPost, s.URL+wechattest.PathClearQuotaV2+query, body)
	}
	q := func(appid, secret string) string {
		return "?" + url.Values{"appid": {appid}, "appsecret": {secret}}.Encode()
	}
	mustToken(t, classic(t, s, oaID, oaSecret))
	wantCode(t, "2nd classic call of the day (quota 1)", classic(t, s, oaID, oaSecret).ErrCode, 45009)

	tests := []struct {
		name        string
		query, body string
		want        int
	}{
		{"no appid", "", "", 41002},
		{"no appsecret", "?appid=" + oaID, "", 41004},
		{"unknown appid", q("wxnobody", oaSecret), "", 40013},
		{"a WeCom corp", q(wwID, wwSecret), "", 40013},
		{"wrong secret", q(oaID, "wrong"), "", 40125},
	}
	for _, tt := range tests {
		wantCode(t, tt.name, v2(tt.query, tt.body).ErrCode, tt.want)
	}
	wantCode(t, "refused calls reset nothing", classic(t, s, oaID, oaSecret).ErrCode, 45009)
	wantCode(t, "GET", do(t, http.MethodGet, s.URL+wechattest.PathClearQuotaV2+q(oaID, oaSecret), "").ErrCode, 43002)

	wantCode(t, "in the query string", v2(q(oaID, oaSecret), "").ErrCode, 0)
	mustToken(t, classic(t, s, oaID, oaSecret))
	wantCode(t, "quota used up again", classic(t, s, oaID, oaSecret).ErrCode, 45009)
	b, _ := json.Marshal(map[string]string{"appid": oaID, "appsecret": oaSecret})
	wantCode(t, "in the body", v2("", string(b)).ErrCode, 0)
	mustToken(t, classic(t, s, oaID, oaSecret))
	wantCode(t, "3rd reset of the month (limit 2)", v2(q(oaID, oaSecret), "").ErrCode, 48006)
	wantSandboxErr(t, "the limit is shared with clear_quota", s.ClearQuota(oaID), 48006)
	if got := s.Calls(wechattest.PathClearQuotaV2, oaID); got != 6 {
		t.Errorf("%d clear_quota/v2 calls counted for %s, want 6", got, oaID)
	}
}

// TestClearFaultsOfOneApp: DELETE /_sandbox/faults?appid=X ends X's faults
// and leaves the others'.
func TestClearFaultsOfOneApp(t *testing.T) {
	s := start(t, wechattest.Config{})
	s.Inject(wechattest.Fault{AppID: oaID, ErrCode: 40243})
	s.Inject(wechattest.Fault{AppID: mpID, ErrCode: 50004})
	req, err := http.NewRequest(http.MethodDelete, s.URL+"/_sandbox/faults?appid="+oaID, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("DELETE /_sandbox/faults?appid=: %d", resp.StatusCode)
	}
	mustToken(t, classic(t, s, oaID, oaSecret))
	wantCode(t, "the other app's fault", classic(t, s, mpID, mpSecret).ErrCode, 50004)
}
