package wxsilenceper_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/officialaccount"
	offConfig "github.com/silenceper/wechat/v2/officialaccount/config"
	"github.com/silenceper/wechat/v2/util"

	wxsilenceper "github.com/wxtoken/wxtoken/docs/consumers/silenceper"
	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const appID = "wxsilenceper0001"

// toSandbox sends the SDK's requests for WeChat's hosts to the sandbox and
// refuses any other host, so that nothing leaves the machine.
type toSandbox struct{ target *url.URL }

func (s toSandbox) RoundTrip(r *http.Request) (*http.Response, error) {
	switch r.URL.Host {
	case "api.weixin.qq.com", "qyapi.weixin.qq.com":
	default:
		return nil, fmt.Errorf("test transport: the SDK called %s, not a WeChat host", r.URL.Host)
	}
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = s.target.Scheme, s.target.Host, ""
	return http.DefaultTransport.RoundTrip(r)
}

// sdkToSandbox points silenceper's HTTP client (a package variable) at sb
// for the test.
func sdkToSandbox(t *testing.T, sb *wechattest.Server) {
	t.Helper()
	target, err := url.Parse(sb.URL)
	if err != nil {
		t.Fatal(err)
	}
	saved := util.DefaultHTTPClient
	util.DefaultHTTPClient = &http.Client{Transport: toSandbox{target}, Timeout: 30 * time.Second}
	t.Cleanup(func() { util.DefaultHTTPClient = saved })
}

// fixture is a local stack with an Official Account that keeps a jsapi
// ticket, and the SDK's OfficialAccount wired to wxtoken through the
// adapter, as a business server would be.
type fixture struct {
	st *stacktest.Stack
	sb *wechattest.Server
	h  *wxsilenceper.AccessToken
	oa *officialaccount.OfficialAccount
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	app := registry.App{Name: "shop", AppID: appID, Kind: registry.OfficialAccount, Mode: registry.Classic,
		Tickets: registry.TicketSetOf(registry.TicketJSAPI)}
	st := stacktest.New(t, stacktest.Options{}, app)
	sdkToSandbox(t, st.Sandbox)

	// What a business server does (README): the client from its AWS config,
	// the handles on the SDK's OfficialAccount. No AppSecret: wxtoken holds
	// it. (The test's stack has a prefix of its own, and its API checks
	// signatures made with the stack's credentials.)
	shop := client.New(st.Cfg, "shop", st.APIURL)
	shop.Prefix, shop.Credentials = st.Prefix, stacktest.Creds
	oa := officialaccount.NewOfficialAccount(&offConfig.Config{AppID: appID, Cache: cache.NewMemory()})
	h := wxsilenceper.New(shop)
	oa.SetAccessTokenHandle(h)
	oa.GetJs().SetJsTicketHandle(wxsilenceper.NewJsTicket(shop))
	return &fixture{st: st, sb: st.Sandbox, h: h, oa: oa}
}

// counts is what the test watches: requests to wxtoken's API, refused
// signatures, and calls on WeChat's token endpoints.
type counts struct{ requests, bad, tokenCalls int }

func (f *fixture) counts() counts {
	return counts{int(f.st.Requests.Load()), int(f.st.BadSignatures.Load()), f.sb.TokenCalls(appID)}
}

func (c counts) since(before counts) counts {
	return counts{c.requests - before.requests, c.bad - before.bad, c.tokenCalls - before.tokenCalls}
}

// callbackIP is the SDK's own business call, wrapped in the retry-once
// helper; runs counts the SDK calls Do made.
func (f *fixture) callbackIP(t *testing.T, runs *int) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return f.h.Do(ctx, func() error {
		*runs++
		ips, err := f.oa.GetBasic().GetCallbackIP()
		if err == nil && len(ips) == 0 {
			err = errors.New("getcallbackip answered no IP")
		}
		return err
	})
}

// TestOfficialAccount shows the adapter with the real SDK: its business
// call succeeds with the published token; after WeChat stops accepting it,
// the next call succeeds after exactly one refresh request to wxtoken; the
// SDK never calls WeChat's token endpoints (wxtoken's refresh is the only
// token call); and the retry is bounded when WeChat keeps rejecting.
func TestOfficialAccount(t *testing.T) {
	f := newFixture(t)
	published := f.st.Publish("shop")
	start := f.counts()

	// 1. The SDK's call succeeds with the token wxtoken published.
	runs := 0
	if err := f.callbackIP(t, &runs); err != nil || runs != 1 {
		t.Fatalf("GetCallbackIP: %v after %d runs; want success at the first", scrubbed(err), runs)
	}
	if got, err := f.oa.GetAccessToken(); err != nil || got != published {
		t.Fatalf("the SDK's token is fp %s (%v); want the published fp %s", wechat.Fingerprint(got), err, wechat.Fingerprint(published))
	}
	if d := f.counts().since(start); d != (counts{}) {
		t.Errorf("reading the published token: %+v; want no API request and no token call", d)
	}

	// 2. WeChat stops accepting it: the next call succeeds after exactly
	// one refresh request (wxtoken's compare-and-refresh, one token call).
	f.sb.Clock().Advance(2 * time.Minute) // past the app's minimum interval between refreshes
	f.sb.Revoke(appID)
	before := f.counts()
	runs = 0
	if err := f.callbackIP(t, &runs); err != nil || runs != 2 {
		t.Fatalf("GetCallbackIP after the revocation: %v after %d runs; want success at the second", scrubbed(err), runs)
	}
	if d := f.counts().since(before); d != (counts{requests: 1, tokenCalls: 1}) {
		t.Errorf("after the revocation: %d API requests, %d refused signatures, %d WeChat token calls; want 1, 0, 1", d.requests, d.bad, d.tokenCalls)
	}
	now, _ := f.st.Published("shop")
	switch got, err := f.oa.GetAccessToken(); {
	case err != nil || got != now || now == published:
		t.Errorf("the SDK now uses fp %s (%v); published before fp %s, now fp %s: want the new published token",
			wechat.Fingerprint(got), err, wechat.Fingerprint(published), wechat.Fingerprint(now))
	case f.sb.Check(got) != 0:
		t.Error("WeChat rejects the SDK's new token")
	}

	// 3. The SDK itself never called WeChat's token endpoints: the only
	// token call so far is wxtoken's refresh in step 2.
	if n := f.sb.TokenCalls(appID) - start.tokenCalls; n != 1 {
		t.Errorf("%d WeChat token calls since the publish; want 1 (wxtoken's refresh)", n)
	}
	if n := f.sb.Calls(wechattest.PathCallbackIP, appID); n != 3 {
		t.Errorf("the sandbox saw %d getcallbackip calls; want 3", n)
	}

	// 4. WeChat keeps rejecting whatever token wxtoken answers: the call
	// fails after one retry, with one refresh request.
	f.sb.Clock().Advance(2 * time.Minute)
	f.sb.Revoke(appID)
	f.sb.Inject(wechattest.Fault{Path: wechattest.PathCallbackIP, AppID: appID, ErrCode: 40001})
	defer f.sb.ClearFaultsOf(appID)
	before = f.counts()
	runs = 0
	err := f.callbackIP(t, &runs)
	if code, _ := wxsilenceper.ErrCode(err); code != 40001 || runs != 2 {
		t.Errorf("GetCallbackIP, always rejected: %v after %d runs; want errcode 40001 after 2", scrubbed(err), runs)
	}
	if d := f.counts().since(before); d != (counts{requests: 1, tokenCalls: 1}) {
		t.Errorf("always rejected: %d API requests, %d refused signatures, %d WeChat token calls; want 1, 0, 1", d.requests, d.bad, d.tokenCalls)
	}

	// And when wxtoken finds the token valid (it asks WeChat, which
	// accepts it: the rejection was the business API's own), it answers the
	// same token: Do returns without a second run.
	before = f.counts()
	runs = 0
	err = f.callbackIP(t, &runs)
	if code, _ := wxsilenceper.ErrCode(err); code != 40001 || runs != 1 {
		t.Errorf("GetCallbackIP, claim refused: %v after %d runs; want errcode 40001 after 1", scrubbed(err), runs)
	}
	if d := f.counts().since(before); d != (counts{requests: 1}) {
		t.Errorf("claim refused: %d API requests, %d refused signatures, %d WeChat token calls; want 1, 0, 0", d.requests, d.bad, d.tokenCalls)
	}
}

// TestJsTicket shows the JS ticket handle with the real SDK: the SDK signs
// a page with the ticket wxtoken published, which WeChat accepts, and calls
// no ticket endpoint itself.
func TestJsTicket(t *testing.T) {
	f := newFixture(t)
	f.st.Publish("shop")
	published := f.st.PublishTicket("shop", registry.TicketJSAPI)
	tickets := f.sb.TicketCalls(appID)

	const pageURL = "https://shop.example/pay?order=42"
	js := f.oa.GetJs()
	cfg, err := js.GetConfig(pageURL)
	if err != nil {
		t.Fatalf("GetConfig: %v", scrubbed(err))
	}
	switch tk, err := js.GetTicket(""); {
	case err != nil || tk != published:
		t.Errorf("the SDK's ticket is fp %s (%v); want the published fp %s", wechat.Fingerprint(tk), err, wechat.Fingerprint(published))
	case cfg.Signature != client.SignJSSDK(published, cfg.NonceStr, cfg.Timestamp, pageURL):
		t.Error("the SDK's page signature was not made with the published ticket")
	case f.sb.CheckTicket(appID, wechattest.TicketJSAPI, tk) != 0:
		t.Error("WeChat rejects the published ticket")
	}
	if n := f.sb.TicketCalls(appID) - tickets; n != 0 {
		t.Errorf("the SDK made %d WeChat ticket calls; want none", n)
	}
}

// scrubbed hides the tokens in err's message (silenceper's transport errors
// quote the URL, and with it the token).
func scrubbed(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(tokenInURL.ReplaceAllString(err.Error(), "access_token=(hidden)"))
}

var tokenInURL = regexp.MustCompile(`access_token=[^&\s]*`)

func TestErrCode(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   int
		ok     bool
		reject bool
	}{
		{"nil", nil, 0, false, false},
		{"typed, from a business call", util.NewCommonError("GetCallbackIP", 40001, "invalid credential"), 40001, true, true},
		{"typed, wrapped", fmt.Errorf("send: %w", util.NewCommonError("Send", 42001, "access_token expired")), 42001, true, true},
		{"formatted by the token call", errors.New("get access_token error : errcode=40014 , errormsg=invalid access_token"), 40014, true, true},
		{"formatted by a business call", errors.New("GetMenu Error , errcode=45009 , errmsg=reach max api daily quota limit"), 45009, true, false},
		{"wxtoken's wechat.Error", &wechat.Error{Code: 40001}, 40001, true, true},
		{"transport", errors.New("http get error : statusCode=502"), 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, ok := wxsilenceper.ErrCode(tt.err)
			if code != tt.code || ok != tt.ok {
				t.Errorf("ErrCode = %d, %v; want %d, %v", code, ok, tt.code, tt.ok)
			}
			if got := ok && client.TokenInvalid(code); got != tt.reject {
				t.Errorf("token rejected = %v; want %v", got, tt.reject)
			}
		})
	}
}
