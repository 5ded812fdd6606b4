package wechattest_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// TestConfigDefaults checks that a zero Config takes WeChat's documented
// values, and that explicit values are kept.
func TestConfigDefaults(t *testing.T) {
	got := wechattest.New(wechattest.Config{}).Config()
	tests := []struct {
		name      string
		got, want any
	}{
		{"TokenLifetime", got.TokenLifetime, 7200 * time.Second},
		{"Grace", got.Grace, 300 * time.Second},
		{"StableWindow", got.StableWindow, 300 * time.Second},
		{"ForceRefreshInterval", got.ForceRefreshInterval, 30 * time.Second},
		{"ForceRefreshDailyLimit", got.ForceRefreshDailyLimit, 20},
		{"ClassicDailyQuota", got.ClassicDailyQuota, 2000},
		{"StableDailyQuota", got.StableDailyQuota, 500000},
		{"StableMinuteQuota", got.StableMinuteQuota, 10000},
		{"WeComDailyQuota", got.WeComDailyQuota, 0},
		{"ClearQuotaMonthlyLimit", got.ClearQuotaMonthlyLimit, 10},
		{"TokenLength", got.TokenLength, 512},
		{"TicketLifetime", got.TicketLifetime, 7200 * time.Second},
		{"TicketRotation", got.TicketRotation, wechattest.TicketSame},
		{"TicketGrace", got.TicketGrace, time.Duration(0)},
		{"TicketDailyQuota", got.TicketDailyQuota, 1000},
		{"WeComTicketHourlyPerCorp", got.WeComTicketHourlyPerCorp, 400},
		{"WeComTicketHourlyPerApp", got.WeComTicketHourlyPerApp, 100},
		{"TicketLength", got.TicketLength, 86},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("default %s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if got.Clock == nil {
		t.Fatal("default Clock = nil, want a running clock")
	}
	if speed := got.Clock.Speed(); speed != 1 {
		t.Errorf("default clock speed = %v, want 1 (real time)", speed)
	}
	if skew := time.Since(got.Clock.Now()); skew < -time.Minute || skew > time.Minute {
		t.Errorf("default clock is %v off the real time, want it to start now", skew)
	}

	own := wechattest.Config{
		TokenLifetime: time.Hour, Grace: time.Minute, StableWindow: 2 * time.Minute,
		ForceRefreshInterval: time.Second, ForceRefreshDailyLimit: 3, ClassicDailyQuota: 4,
		StableDailyQuota: 5, StableMinuteQuota: 6, WeComDailyQuota: 7, TokenLength: 600, ClearQuotaMonthlyLimit: 8,
		TicketLifetime: 3 * time.Hour, TicketRotation: wechattest.TicketNewEndsOld, TicketGrace: 9 * time.Second,
		TicketDailyQuota: 10, WeComTicketHourlyPerCorp: 11, WeComTicketHourlyPerApp: 12, TicketLength: 13,
		Clock: wechattest.NewClock(defT0, 0),
	}
	if kept := wechattest.New(own).Config(); kept != own {
		t.Errorf("Config() = %+v, want the explicit values kept: %+v", kept, own)
	}
}

var defT0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC) // 18:00 in Beijing: no quota reset during a test

const defAppID, defSecret = "wx00000000000000d4", "def-secret-0123456789abcdef0123456"

// defAnswer is a decoded WeChat answer.
type defAnswer struct {
	ErrCode     int    `json:"errcode"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// defSandbox returns a sandbox with the default configuration but a frozen
// clock, and one Official Account.
func defSandbox(t *testing.T) *wechattest.Sandbox {
	t.Helper()
	sb := wechattest.New(wechattest.Config{Clock: wechattest.NewClock(defT0, 0)},
		wechattest.App{AppID: defAppID, Secret: defSecret, Kind: wechattest.OfficialAccount})
	return sb
}

// defCall serves one request in-process and decodes the answer.
func defCall(t *testing.T, sb *wechattest.Sandbox, req *http.Request) defAnswer {
	t.Helper()
	rec := httptest.NewRecorder()
	sb.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d", req.Method, req.URL.Path, rec.Code)
	}
	var a defAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("%s %s: decode answer: %v", req.Method, req.URL.Path, err)
	}
	return a
}

func defClassic(t *testing.T, sb *wechattest.Sandbox) defAnswer {
	t.Helper()
	q := url.Values{"grant_type": {"client_credential"}, "appid": {defAppID}, "secret": {defSecret}}
	return defCall(t, sb, httptest.NewRequest(http.MethodGet, wechattest.PathToken+"?"+q.Encode(), nil))
}

func defStable(t *testing.T, sb *wechattest.Sandbox, force bool) defAnswer {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": defAppID, "secret": defSecret, "force_refresh": force})
	req := httptest.NewRequest(http.MethodPost, wechattest.PathStableToken, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	return defCall(t, sb, req)
}

// defToken fails the test unless a carries a token, and returns the token
// (callers compare tokens, never print them).
func defToken(t *testing.T, what string, a defAnswer) string {
	t.Helper()
	if a.ErrCode != 0 || a.AccessToken == "" {
		t.Fatalf("%s: errcode %d, want a token", what, a.ErrCode)
	}
	return a.AccessToken
}

func defCheck(t *testing.T, sb *wechattest.Sandbox, what, token string, want int) {
	t.Helper()
	if got := sb.Check(token); got != want {
		t.Errorf("%s: the business call answers %d, want %d", what, got, want)
	}
}

// TestDefaultClassicBehaviour: 512-character tokens for 7200 s, the previous
// token valid for 300 s more, and 2000 calls a day, the 2001st answered 45009.
func TestDefaultClassicBehaviour(t *testing.T) {
	sb := defSandbox(t)
	first := defClassic(t, sb)
	old := defToken(t, "first classic call", first)
	if len(old) != 512 {
		t.Errorf("classic token of %d characters, want 512", len(old))
	}
	if first.ExpiresIn != 7200 {
		t.Errorf("classic expires_in = %d, want 7200", first.ExpiresIn)
	}
	defToken(t, "second classic call", defClassic(t, sb))
	sb.Clock().Advance(299 * time.Second)
	defCheck(t, sb, "superseded token 299 s later", old, 0)
	sb.Clock().Advance(time.Second)
	defCheck(t, sb, "superseded token 300 s later", old, 40001)

	for n := 3; n <= 2000; n++ {
		if a := defClassic(t, sb); a.ErrCode != 0 {
			t.Fatalf("classic call %d of the day: errcode %d, want a token", n, a.ErrCode)
		}
	}
	if got := defClassic(t, sb).ErrCode; got != 45009 {
		t.Errorf("classic call 2001 of the day: errcode %d, want 45009", got)
	}
}

// TestDefaultStableBehaviour: normal mode keeps the token until its last
// 300 s; force_refresh works at most 20 times a day, 30 s apart.
func TestDefaultStableBehaviour(t *testing.T) {
	sb := defSandbox(t)
	first := defStable(t, sb, false)
	tok := defToken(t, "first stable call", first)
	if len(tok) != 512 || first.ExpiresIn != 7200 {
		t.Errorf("stable token of %d characters for %d s, want 512 for 7200", len(tok), first.ExpiresIn)
	}
	sb.Clock().Advance(7200*time.Second - 300*time.Second - time.Second)
	a := defStable(t, sb, false)
	if defToken(t, "stable call 301 s before expiry", a) != tok || a.ExpiresIn != 301 {
		t.Errorf("stable call 301 s before expiry: a different token or expires_in %d, want the same token with 301", a.ExpiresIn)
	}
	sb.Clock().Advance(time.Second)
	if defToken(t, "stable call 300 s before expiry", defStable(t, sb, false)) == tok {
		t.Error("stable call 300 s before expiry returned the old token, want a new one")
	}
	defCheck(t, sb, "rotated stable token during its final window", tok, 0)
	sb.Clock().Advance(300 * time.Second)
	defCheck(t, sb, "rotated stable token at its expiry", tok, 42001)

	cur := ""
	for n := 1; n <= 20; n++ {
		sb.Clock().Advance(30 * time.Second)
		next := defToken(t, "force_refresh", defStable(t, sb, true))
		if next == cur {
			t.Fatalf("force_refresh %d, 30 s after the previous one: the same token, want a new one", n)
		}
		cur = next
		sb.Clock().Advance(29 * time.Second)
		if defToken(t, "force_refresh 29 s later", defStable(t, sb, true)) != cur {
			t.Fatalf("force_refresh 29 s after effective call %d: a new token, want the current one", n)
		}
		sb.Clock().Advance(-29 * time.Second)
	}
	sb.Clock().Advance(30 * time.Second)
	if got := defStable(t, sb, true).ErrCode; got != 45009 {
		t.Errorf("force_refresh 21 of the day: errcode %d, want 45009", got)
	}
}
