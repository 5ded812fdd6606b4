package wechat_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const (
	appID  = "wx1234567890abcdef"
	secret = "S3cr3tAppSecret0123456789abcdefX" // 32 characters, like a real AppSecret
	corpID = "ww1234567890abcdef"
	corpSc = "C0rpS3cr3t-0123456789abcdefghijklmnopqrstu"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// sandbox starts a WeChat sandbox with a frozen clock and returns it with a
// client pointed at it, sharing its clock, with fast retries.
func sandbox(t *testing.T, cfg wechattest.Config) (*wechattest.Server, *wechat.Client) {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = wechattest.NewClock(t0, 0)
	}
	srv := wechattest.NewServer(cfg,
		wechattest.App{AppID: appID, Secret: secret, Kind: wechattest.OfficialAccount},
		wechattest.App{AppID: corpID, Secret: corpSc, Kind: wechattest.WeCom},
	)
	t.Cleanup(srv.Close)
	return srv, &wechat.Client{
		BaseURLs:      []string{srv.URL},
		WeComBaseURLs: []string{srv.URL},
		BaseDelay:     time.Millisecond,
		MaxDelay:      5 * time.Millisecond,
		Now:           srv.Now,
	}
}

func TestCredentialCalls(t *testing.T) {
	srv, c := sandbox(t, wechattest.Config{})
	ctx := context.Background()
	tests := []struct {
		name  string
		fetch func() (wechat.Token, error)
		api   wechattest.API
	}{
		{"classic", func() (wechat.Token, error) { return c.Token(ctx, appID, secret) }, wechattest.Classic},
		{"stable", func() (wechat.Token, error) { return c.StableToken(ctx, appID, secret, false) }, wechattest.Stable},
		{"stable force", func() (wechat.Token, error) { return c.StableToken(ctx, appID, secret, true) }, wechattest.Stable},
		{"wecom", func() (wechat.Token, error) { return c.WeComToken(ctx, corpID, corpSc) }, wechattest.WeComAPI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := tt.fetch()
			if err != nil {
				t.Fatal(err)
			}
			id := appID
			if tt.api == wechattest.WeComAPI {
				id = corpID
			}
			want, _ := srv.Current(id, tt.api)
			if tok.AccessToken != want {
				t.Errorf("token is not the one the sandbox issued last")
			}
			if tok.ExpiresIn != 7200*time.Second || !tok.FetchedAt.Equal(t0) || !tok.ExpiresAt.Equal(t0.Add(7200*time.Second)) {
				t.Errorf("expires_in %v fetched %v expires %v; want 2h from %v", tok.ExpiresIn, tok.FetchedAt, tok.ExpiresAt, t0)
			}
			if err := c.CheckToken(ctx, tok.AccessToken); err != nil {
				t.Errorf("CheckToken(new token) = %v, want nil", err)
			}
		})
	}
}

func TestStableExpiresInIsRemainingLife(t *testing.T) {
	srv, c := sandbox(t, wechattest.Config{})
	ctx := context.Background()
	first, err := c.StableToken(ctx, appID, secret, false)
	if err != nil {
		t.Fatal(err)
	}
	srv.Clock().Advance(40 * time.Minute)
	again, err := c.StableToken(ctx, appID, secret, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.AccessToken != first.AccessToken {
		t.Fatal("normal mode returned a new token 40 minutes in")
	}
	if again.ExpiresIn != 80*time.Minute || !again.ExpiresAt.Equal(first.ExpiresAt) {
		t.Errorf("second answer: expires_in %v, expires_at %v; want 80m and the first answer's %v", again.ExpiresIn, again.ExpiresAt, first.ExpiresAt)
	}
}

func TestCheckToken(t *testing.T) {
	srv, c := sandbox(t, wechattest.Config{})
	ctx := context.Background()
	old, err := c.Token(ctx, appID, secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Token(ctx, appID, secret); err != nil {
		t.Fatal(err)
	}
	srv.Clock().Advance(5 * time.Minute)
	wc, err := c.WeComToken(ctx, corpID, corpSc)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		check func() error
		want  int // 0: accepted
	}{
		{"superseded past grace", func() error { return c.CheckToken(ctx, old.AccessToken) }, 40001},
		{"garbage", func() error { return c.CheckToken(ctx, "not-a-token") }, 40014},
		{"WeCom token", func() error { return c.CheckWeComToken(ctx, wc.AccessToken) }, 0},
		{"expired WeCom token", func() error { srv.Clock().Advance(2 * time.Hour); return c.CheckWeComToken(ctx, wc.AccessToken) }, 42001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check()
			if tt.want == 0 {
				if err != nil {
					t.Fatalf("got %v, want accepted", err)
				}
				return
			}
			var we *wechat.Error
			if !errors.As(err, &we) || we.Code != tt.want || !wechat.IsTokenInvalid(err) {
				t.Fatalf("got %v, want errcode %d classified token_invalid", err, tt.want)
			}
			if we.RID == "" {
				t.Error("rid not parsed from errmsg")
			}
		})
	}
}

func TestClassification(t *testing.T) {
	tests := []struct {
		code   int
		class  wechat.Class
		ipWant string // for whitelist codes: the IP quoted
	}{
		{-1, wechat.ClassRetryable, ""},
		{45011, wechat.ClassMinuteQuota, ""},
		{45009, wechat.ClassDailyQuota, ""},
		{40001, wechat.ClassConfig, ""}, // on a credential call: wrong secret
		{40013, wechat.ClassConfig, ""},
		{40125, wechat.ClassConfig, ""},
		{40164, wechat.ClassConfig, "203.0.113.7"},
		{61004, wechat.ClassConfig, "203.0.113.8"},
		{40243, wechat.ClassConfig, ""},
		{61024, wechat.ClassConfig, ""},
		{50004, wechat.ClassConfig, ""},
		{89501, wechat.ClassConfig, ""},
		{89503, wechat.ClassConfig, ""},
		{89506, wechat.ClassConfig, ""},
		{89507, wechat.ClassConfig, ""},
		{40002, wechat.ClassProgramming, ""},
		{41001, wechat.ClassProgramming, ""},
		{41002, wechat.ClassProgramming, ""},
		{41004, wechat.ClassProgramming, ""},
		{43002, wechat.ClassProgramming, ""},
		{48001, wechat.ClassOther, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			srv, c := sandbox(t, wechattest.Config{})
			c.MaxAttempts = 3
			srv.Inject(wechattest.Fault{Path: wechattest.PathStableToken, ErrCode: tt.code})
			_, err := c.StableToken(context.Background(), appID, secret, false)
			var we *wechat.Error
			if !errors.As(err, &we) || we.Code != tt.code || we.Op != wechat.OpStableToken {
				t.Fatalf("got %v, want *wechat.Error %d from stable_token", err, tt.code)
			}
			if got := wechat.Classify(err); got != tt.class {
				t.Errorf("Classify = %v, want %v", got, tt.class)
			}
			wantCalls := 1
			if tt.class == wechat.ClassRetryable {
				wantCalls = 3
			}
			if got := srv.TokenCalls(appID); got != wantCalls {
				t.Errorf("%d calls, want %d (retry only what is retryable)", got, wantCalls)
			}
			ip, isWhitelist := wechat.WhitelistIP(err)
			if isWhitelist != (tt.code == 40164 || tt.code == 61004) || ip != tt.ipWant {
				t.Errorf("WhitelistIP = %q, %v", ip, isWhitelist)
			}
		})
	}
}

func TestWhitelistQuotesCallerIP(t *testing.T) {
	srv := wechattest.NewServer(wechattest.Config{},
		wechattest.App{AppID: appID, Secret: secret, Kind: wechattest.OfficialAccount, AllowedIPs: []string{"203.0.113.1"}},
		wechattest.App{AppID: corpID, Secret: corpSc, Kind: wechattest.WeCom, AllowedIPs: []string{"203.0.113.1"}})
	defer srv.Close()
	c := &wechat.Client{BaseURLs: []string{srv.URL}, WeComBaseURLs: []string{srv.URL}}
	_, err := c.Token(context.Background(), appID, secret)
	if ip, ok := wechat.WhitelistIP(err); !ok || ip != "127.0.0.1" || !wechat.IsConfig(err) {
		t.Errorf("classic: WhitelistIP(%v) = %q, %v; want 127.0.0.1, config", err, ip, ok)
	}
	_, err = c.WeComToken(context.Background(), corpID, corpSc)
	if ip, ok := wechat.WhitelistIP(err); !ok || ip != "127.0.0.1" || !wechat.IsConfig(err) {
		t.Errorf("wecom: WhitelistIP(%v) = %q, %v; want 127.0.0.1, config", err, ip, ok)
	}
}

func TestInvalidAnswersNeverBecomeTokens(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("A", 70<<10) + `","expires_in":7200}`
	tests := []struct {
		name  string
		fault wechattest.Fault
	}{
		{"empty token", wechattest.Fault{Body: `{"access_token":"","expires_in":7200}`}},
		{"no token", wechattest.Fault{Body: `{"expires_in":7200}`}},
		{"zero expires_in", wechattest.Fault{Body: `{"access_token":"abc","expires_in":0}`}},
		{"negative expires_in", wechattest.Fault{Body: `{"access_token":"abc","expires_in":-5}`}},
		{"missing expires_in", wechattest.Fault{Body: `{"access_token":"abc"}`}},
		{"fractional expires_in", wechattest.Fault{Body: `{"access_token":"abc","expires_in":7.5}`}},
		{"absurd expires_in", wechattest.Fault{Body: `{"access_token":"abc","expires_in":99999999}`}},
		{"token with spaces", wechattest.Fault{Body: `{"access_token":"ab c","expires_in":7200}`}},
		{"not JSON", wechattest.Fault{Body: `access_token=abc&expires_in=7200`}},
		{"truncated JSON", wechattest.Fault{Body: `{"access_token":"abc","expires_`}},
		{"two documents", wechattest.Fault{Body: `{"access_token":"abc","expires_in":7200}{}`}},
		{"HTML page", wechattest.Fault{Body: "<!DOCTYPE html><html><body>Bad Gateway</body></html>", ContentType: "text/html"}},
		{"HTML content type", wechattest.Fault{Body: `{"access_token":"abc","expires_in":7200}`, ContentType: "text/html; charset=utf-8"}},
		{"oversized body", wechattest.Fault{Body: big, ContentType: "application/json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := sandbox(t, wechattest.Config{})
			srv.Inject(tt.fault)
			tok, err := c.Token(context.Background(), appID, secret)
			var re *wechat.ResponseError
			if !errors.As(err, &re) {
				t.Fatalf("got %v (%T), want *wechat.ResponseError", err, err)
			}
			if tok != (wechat.Token{}) {
				t.Errorf("a failed call returned a non-zero Token %v", tok)
			}
			if wechat.IsRetryable(err) {
				t.Error("an unusable 200 answer was classified retryable")
			}
			if strings.Contains(err.Error(), "AAAA") || strings.Contains(err.Error(), "abc") {
				t.Errorf("error %q quotes the body", err)
			}
		})
	}
}

// counting serves status (or, with status 0, refuses nothing and answers via
// next) and counts calls.
func counting(status int, next http.Handler, n *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if status != 0 {
			http.Error(w, "unavailable", status)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// deadURL returns a URL whose port refuses connections.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func TestRetryAndFailover(t *testing.T) {
	srv, _ := sandbox(t, wechattest.Config{})
	var n502, nOK atomic.Int64
	bad := counting(502, nil, &n502)
	defer bad.Close()
	good := counting(0, srv, &nOK)
	defer good.Close()

	c := &wechat.Client{
		BaseURLs:  []string{deadURL(t), bad.URL, good.URL},
		BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond,
	}
	// Normal-mode stable_token is safe to repeat; /cgi-bin/token is not
	// (see "a classic token call is not repeated once sent").
	tok, err := c.StableToken(context.Background(), appID, secret, false)
	if err != nil {
		t.Fatalf("fail-over: %v", err)
	}
	if tok.AccessToken == "" || n502.Load() != 1 || nOK.Load() != 1 {
		t.Errorf("calls: 502 domain %d, good domain %d; want 1 and 1", n502.Load(), nOK.Load())
	}

	t.Run("retries are bounded", func(t *testing.T) {
		srv.Inject(wechattest.Fault{ErrCode: -1, Times: 10})
		defer srv.ClearFaults()
		before := srv.TokenCalls(appID)
		c := &wechat.Client{BaseURLs: []string{srv.URL}, MaxAttempts: 3, BaseDelay: time.Millisecond}
		_, err := c.Token(context.Background(), appID, secret)
		if !wechat.IsRetryable(err) {
			t.Fatalf("got %v, want the last retryable error", err)
		}
		if got := srv.TokenCalls(appID) - before; got != 3 {
			t.Errorf("%d attempts, want MaxAttempts = 3", got)
		}
	})

	t.Run("retries stop at the caller's deadline", func(t *testing.T) {
		srv.Inject(wechattest.Fault{ErrCode: -1, Times: 10})
		defer srv.ClearFaults()
		before := srv.TokenCalls(appID)
		c := &wechat.Client{BaseURLs: []string{srv.URL}, MaxAttempts: 10, BaseDelay: time.Hour, MaxDelay: time.Hour}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.Token(ctx, appID, secret)
		if !wechat.IsRetryable(err) || ctx.Err() != nil {
			t.Fatalf("got %v (ctx %v); want the retryable error, returned before the deadline instead of sleeping past it", err, ctx.Err())
		}
		if got := srv.TokenCalls(appID) - before; got != 1 {
			t.Errorf("%d attempts, want 1 (no time left to back off)", got)
		}
	})

	t.Run("timeouts are retried", func(t *testing.T) {
		srv.Inject(wechattest.Fault{Latency: wechattest.Duration(2 * time.Second), Times: 1})
		defer srv.ClearFaults()
		c := &wechat.Client{BaseURLs: []string{srv.URL}, HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}, BaseDelay: time.Millisecond}
		if _, err := c.StableToken(context.Background(), appID, secret, false); err != nil {
			t.Fatalf("timeout then success: %v", err)
		}
	})

	// Every /cgi-bin/token call issues a token that ends the previous one:
	// after a request may have reached WeChat, a retry would issue a second
	// token and kill the first (review C4).
	for _, f := range []wechattest.Fault{
		{Path: wechattest.PathToken, Drop: true, Times: 1},
		{Path: wechattest.PathToken, Latency: wechattest.Duration(2 * time.Second), Times: 1},
	} {
		name := "dropped"
		if f.Latency > 0 {
			name = "timed out"
		}
		t.Run("a classic token call is not repeated once sent: "+name, func(t *testing.T) {
			srv.Inject(f)
			defer srv.ClearFaults()
			before := srv.TokenCalls(appID)
			c := &wechat.Client{BaseURLs: []string{srv.URL, srv.URL}, HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}, BaseDelay: time.Millisecond}
			_, err := c.Token(context.Background(), appID, secret)
			var te *wechat.TransportError
			if !errors.As(err, &te) || !te.Sent {
				t.Fatalf("got %v, want a TransportError after sending (%d calls)", err, srv.TokenCalls(appID)-before)
			}
			if got := srv.TokenCalls(appID) - before; got != 1 {
				t.Errorf("%d /cgi-bin/token calls, want 1", got)
			}
			// -1 (nothing issued) and a refused connection are retried.
			srv.Inject(wechattest.Fault{Path: wechattest.PathToken, ErrCode: -1, Times: 1})
			c.BaseURLs = []string{deadURL(t), srv.URL}
			if _, err := c.Token(context.Background(), appID, secret); err != nil {
				t.Errorf("token after a refused connection and a -1: %v", err)
			}
		})
	}

	t.Run("force_refresh is not repeated once sent", func(t *testing.T) {
		srv.Inject(wechattest.Fault{Path: wechattest.PathStableToken, Drop: true, Times: 1})
		defer srv.ClearFaults()
		before := srv.TokenCalls(appID)
		c := &wechat.Client{BaseURLs: []string{srv.URL}, BaseDelay: time.Millisecond}
		_, err := c.StableToken(context.Background(), appID, secret, true)
		var te *wechat.TransportError
		if !errors.As(err, &te) || !te.Sent {
			t.Fatalf("got %v, want a TransportError after sending", err)
		}
		if got := srv.TokenCalls(appID) - before; got != 1 {
			t.Errorf("%d force_refresh calls, want 1", got)
		}
		// Not yet sent (connection refused): failing over is safe.
		c.BaseURLs = []string{deadURL(t), srv.URL}
		if _, err := c.StableToken(context.Background(), appID, secret, true); err != nil {
			t.Errorf("force_refresh after a refused connection: %v", err)
		}
	})
}

// TestSecretsNeverInErrorsOrLogs drives every failure path with a secret and
// a token that must not appear in any error text or log line.
func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	srv, _ := sandbox(t, wechattest.Config{})
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/elsewhere?"+r.URL.RawQuery, http.StatusFound)
	}))
	defer redirect.Close()
	token := "TOKEN-" + strings.Repeat("t", 100)

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	mk := func(bases ...string) *wechat.Client {
		return &wechat.Client{BaseURLs: bases, WeComBaseURLs: bases, MaxAttempts: 2, BaseDelay: time.Millisecond, Logger: logger}
	}
	echo := "invalid appsecret " + secret + " rid: 0000-1111-2222"
	tests := []struct {
		name  string
		fault *wechattest.Fault
		call  func(c *wechat.Client) error
		bases []string
	}{
		{"connection refused", nil, nil, []string{deadURL(t)}},
		{"dropped connection", &wechattest.Fault{Drop: true}, nil, nil},
		{"timeout", &wechattest.Fault{Latency: wechattest.Duration(time.Second)}, nil, nil},
		{"HTTP 503", &wechattest.Fault{Status: 503}, nil, nil},
		{"HTML page", &wechattest.Fault{Body: "<html>oops</html>"}, nil, nil},
		{"errmsg echoing the secret", &wechattest.Fault{ErrCode: 40125, ErrMsg: echo}, nil, nil},
		{"retried -1", &wechattest.Fault{ErrCode: -1}, nil, nil},
		{"redirect", nil, nil, []string{redirect.URL}},
		{"check token: refused", nil, func(c *wechat.Client) error { return c.CheckToken(context.Background(), token) }, []string{deadURL(t)}},
		{"check token: timeout", &wechattest.Fault{Latency: wechattest.Duration(time.Second)}, func(c *wechat.Client) error { return c.CheckToken(context.Background(), token) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.ClearFaults()
			if tt.fault != nil {
				srv.Inject(*tt.fault)
			}
			bases := tt.bases
			if bases == nil {
				bases = []string{srv.URL}
			}
			c := mk(bases...)
			c.HTTPClient = &http.Client{Timeout: 200 * time.Millisecond}
			if tt.name == "redirect" {
				c.HTTPClient = nil // the default client, which refuses redirects
			}
			var errs []error
			if tt.call != nil {
				errs = append(errs, tt.call(c))
			} else {
				_, e1 := c.Token(context.Background(), appID, secret)
				_, e2 := c.StableToken(context.Background(), appID, secret, false)
				_, e3 := c.WeComToken(context.Background(), corpID, secret)
				e4 := c.ClearQuota(context.Background(), appID, secret)
				errs = append(errs, e1, e2, e3, e4)
			}
			for i, err := range errs {
				if err == nil {
					t.Fatalf("call %d succeeded; the case must fail", i)
				}
				for _, form := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
					for _, s := range []string{secret, url.QueryEscape(secret), token} {
						if strings.Contains(form, s) {
							t.Errorf("call %d: error form %q reveals a secret or token", i, form)
						}
					}
				}
			}
		})
	}
	srv.ClearFaults()
	if logs.Len() == 0 {
		t.Fatal("no retry was logged; the log check below would prove nothing")
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), token) {
		t.Errorf("logs reveal a secret or token:\n%s", logs.String())
	}
}

func TestTokenFormsHideTheToken(t *testing.T) {
	tok := wechat.Token{AccessToken: "SENSITIVE-TOKEN-VALUE", ExpiresIn: time.Hour, ExpiresAt: t0}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("token", "tok", tok)
	forms := []string{tok.String(), fmt.Sprintf("%v", tok), fmt.Sprintf("%+v", tok), fmt.Sprintf("%#v", tok), fmt.Sprint(&tok), logs.String()}
	for _, f := range forms {
		if strings.Contains(f, "SENSITIVE") {
			t.Errorf("form %q reveals the token", f)
		}
		if !strings.Contains(f, tok.Fingerprint()) {
			t.Errorf("form %q lacks the fingerprint", f)
		}
	}
	if wechat.Fingerprint("a") == wechat.Fingerprint("b") || len(wechat.Fingerprint("a")) != 12 {
		t.Error("fingerprints must differ per token and be 12 hex digits")
	}
}

func TestCheckTokenNeedsARealAnswer(t *testing.T) {
	for _, body := range []string{`{}`, `null`, `{"foo":1}`, `{"errcode":0}}`, `{"errcode":0,"errmsg":"ok"}`} {
		t.Run(body, func(t *testing.T) {
			srv, c := sandbox(t, wechattest.Config{})
			srv.Inject(wechattest.Fault{Path: wechattest.PathDomainIP, Body: body, ContentType: "application/json"})
			err := c.CheckToken(context.Background(), "whatever")
			var re *wechat.ResponseError
			if !errors.As(err, &re) {
				t.Errorf("CheckToken with answer %s = %v, want a ResponseError (not \"accepted\")", body, err)
			}
		})
	}
}

func TestCustomHTTPClientNeverFollowsRedirects(t *testing.T) {
	var leaked atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.RawQuery, "secret") {
			leaked.Add(1)
		}
	}))
	defer other.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal?"+r.URL.RawQuery, http.StatusFound)
	}))
	defer redirect.Close()
	c := &wechat.Client{BaseURLs: []string{redirect.URL}, MaxAttempts: 1, HTTPClient: &http.Client{Timeout: time.Second}}
	if _, err := c.Token(context.Background(), appID, secret); err == nil {
		t.Fatal("a redirect produced a token")
	}
	if leaked.Load() != 0 {
		t.Error("the secret was sent to the redirect target")
	}
}

func TestWhitelistIPForms(t *testing.T) {
	tests := []struct {
		code      int
		msg, want string
	}{
		{40164, "invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist rid: 1-2-3", "1.2.3.4"},
		{40164, "invalid ip  ipv6 2001:db8::1, not in whitelist rid: 1-2-3", "2001:db8::1"},
		{61004, "access clientip [5.6.7.8] is not registered", "5.6.7.8"},
		{61004, "access clientip is not registered, requestIP: 9.9.9.9", "9.9.9.9"},
		{60020, "not allow to access from your ip, hint: [x], from ip: 10.1.2.3, more info", "10.1.2.3"},
		{40164, "not in whitelist", ""},
	}
	for _, tt := range tests {
		ip, ok := wechat.WhitelistIP(&wechat.Error{Op: wechat.OpToken, Code: tt.code, Msg: tt.msg})
		if !ok || ip != tt.want {
			t.Errorf("WhitelistIP(%q) = %q, %v; want %q", tt.msg, ip, ok, tt.want)
		}
	}
}

func TestClassifyPlainErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want wechat.Class
	}{
		{"nil", nil, wechat.ClassOther},
		{"unrelated", errors.New("boom"), wechat.ClassOther},
		{"deadline", fmt.Errorf("wrapped: %w", context.DeadlineExceeded), wechat.ClassRetryable},
		{"cancelled", &wechat.TransportError{Op: wechat.OpToken, Err: context.Canceled}, wechat.ClassOther},
		{"HTTP 404", &wechat.StatusError{StatusCode: 404}, wechat.ClassOther},
		{"HTTP 500", &wechat.StatusError{StatusCode: 500}, wechat.ClassRetryable},
		{"40001 on a business call", &wechat.Error{Op: wechat.OpCheckToken, Code: 40001}, wechat.ClassTokenInvalid},
		{"42001", &wechat.Error{Op: wechat.OpCheckToken, Code: 42001}, wechat.ClassTokenInvalid},
		{"40014", &wechat.Error{Op: wechat.OpCheckToken, Code: 40014}, wechat.ClassTokenInvalid},
		{"wrapped *Error", fmt.Errorf("refresh: %w", &wechat.Error{Op: wechat.OpToken, Code: 45009}), wechat.ClassDailyQuota},
		{"45009 on an Official Account's ticket call: its daily quota", &wechat.Error{Op: wechat.OpTicket, Code: 45009}, wechat.ClassDailyQuota},
		{"45009 on WeCom's gettoken: a frequency limit", &wechat.Error{Op: wechat.OpWeComToken, Code: 45009}, wechat.ClassHourQuota},
		{"45009 on WeCom's jsapi ticket call: its hourly limit", &wechat.Error{Op: wechat.OpWeComJSAPITicket, Code: 45009}, wechat.ClassHourQuota},
		{"45009 on WeCom's agent_config ticket call: its hourly limit", &wechat.Error{Op: wechat.OpWeComAgentTicket, Code: 45009}, wechat.ClassHourQuota},
		{"40001 on a ticket call: the access token", &wechat.Error{Op: wechat.OpTicket, Code: 40001}, wechat.ClassTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wechat.Classify(tt.err); got != tt.want {
				t.Errorf("Classify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIsSuperseded(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"40001 on a business call", fmt.Errorf("check: %w", &wechat.Error{Op: wechat.OpCheckToken, Code: 40001}), true},
		{"40001 on the token call (wrong secret)", &wechat.Error{Op: wechat.OpToken, Code: 40001}, false},
		{"42001 expired", &wechat.Error{Op: wechat.OpCheckToken, Code: 42001}, false},
		{"40014 malformed", &wechat.Error{Op: wechat.OpCheckToken, Code: 40014}, false},
		{"not a WeChat answer", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wechat.IsSuperseded(tt.err); got != tt.want {
				t.Errorf("IsSuperseded = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClearQuota: clear_quota/v2 resets the daily counts with the appid and
// secret; its refusals are *Errors; it is retried after -1 but not after an
// answer lost on the way (each effective call spends one of 10 a month).
func TestClearQuota(t *testing.T) {
	srv, c := sandbox(t, wechattest.Config{ClassicDailyQuota: 1, ClearQuotaMonthlyLimit: 2})
	ctx := context.Background()
	calls := func() int { return srv.Calls(wechattest.PathClearQuotaV2, appID) }
	if _, err := c.Token(ctx, appID, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Token(ctx, appID, secret); !wechat.IsDailyQuota(err) {
		t.Fatalf("2nd classic call of the day: %v, want 45009", err)
	}
	if err := c.ClearQuota(ctx, appID, secret); err != nil {
		t.Fatalf("ClearQuota: %v", err)
	}
	if _, err := c.Token(ctx, appID, secret); err != nil {
		t.Errorf("a token call after the reset: %v", err)
	}

	srv.Inject(wechattest.Fault{Path: wechattest.PathClearQuotaV2, ErrCode: -1, Times: 1})
	before := calls()
	if err := c.ClearQuota(ctx, appID, secret); err != nil || calls()-before != 2 {
		t.Errorf("after -1: %v in %d calls, want success in 2", err, calls()-before)
	}
	srv.Inject(wechattest.Fault{Path: wechattest.PathClearQuotaV2, Drop: true, Times: 1})
	before = calls()
	if err := c.ClearQuota(ctx, appID, secret); err == nil || calls()-before != 1 {
		t.Errorf("a lost answer: %v in %d calls, want a failure without a retry", err, calls()-before)
	}

	tests := []struct {
		name          string
		appid, secret string
		want          int
	}{
		{"the 10 a month (2 here) used up", appID, secret, 48006},
		{"a WeCom corp", corpID, corpSc, 40013},
		{"a wrong secret", appID, "wrong-" + secret, 40125},
	}
	for _, tt := range tests {
		err := c.ClearQuota(ctx, tt.appid, tt.secret)
		var we *wechat.Error
		if !errors.As(err, &we) || we.Code != tt.want || we.Op != wechat.OpClearQuota {
			t.Errorf("%s: %v, want an *Error %d of %s", tt.name, err, tt.want, wechat.OpClearQuota)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error holds the secret", tt.name)
		}
	}
}
