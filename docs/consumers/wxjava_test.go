package consumers_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const (
	wxjavaMPAppID  = "wxwxjavamp000001"
	wxjavaCorpID   = "wwwxjavacp000001"
	wxjavaMainName = "io.github.wxtoken.wxjava.Demo"
)

// wxjavaAnswer is the Demo's answer to a command.
type wxjavaAnswer struct {
	OK      bool   `json:"ok"`
	Errcode int    `json:"errcode"`
	Error   string `json:"error"`
}

// wxjavaCost is what one step costs.
type wxjavaCost struct {
	// Requests to wxtoken's API, of which BadSignatures failed SigV4.
	Requests, BadSignatures int
	// TokenCalls reached WeChat's token endpoints (token, stable_token,
	// gettoken): the refresher's and, if it made any, WxJava's own.
	TokenCalls int
	// CallbackIP and DomainIP reached getcallbackip and get_api_domain_ip:
	// WxJava's business call (getcallbackip for the Official Account,
	// get_api_domain_ip for WeCom) and wxtoken's check of a claimed-stale
	// token (get_api_domain_ip).
	CallbackIP, DomainIP int
}

func wxjavaSnapshot(st *stacktest.Stack, appID string) wxjavaCost {
	return wxjavaCost{
		Requests: int(st.Requests.Load()), BadSignatures: int(st.BadSignatures.Load()),
		TokenCalls: st.Sandbox.TokenCalls(appID),
		CallbackIP: st.Sandbox.Calls(wechattest.PathCallbackIP, appID),
		DomainIP:   st.Sandbox.Calls(wechattest.PathDomainIP, appID),
	}
}

func (c wxjavaCost) minus(o wxjavaCost) wxjavaCost {
	return wxjavaCost{c.Requests - o.Requests, c.BadSignatures - o.BadSignatures, c.TokenCalls - o.TokenCalls,
		c.CallbackIP - o.CallbackIP, c.DomainIP - o.DomainIP}
}

// TestWxJava runs the real WxJava (weixin-java-mp for an Official Account
// with classic tokens, weixin-java-cp for a WeCom application) through the
// adapter in docs/consumers/wxjava, built by `make .cache/wxjava/.installed`,
// against the local stack and the WeChat sandbox, WxJava pointed at the
// sandbox by its own host configuration. For each:
//
//  1. WxJava's business call succeeds with the token wxtoken published, and
//     the next one is served from the cache;
//  2. after the sandbox revokes the token, the next call succeeds after
//     exactly one refresh request to wxtoken (correctly signed);
//  3. WxJava never calls WeChat's token endpoint: every token call is
//     wxtoken's refresh (one, in step 2), and WxJava's forced refresh
//     (getAccessToken(true)) is a request to wxtoken, not to WeChat;
//  4. when WeChat still rejects the token wxtoken answers, the call fails
//     after one retry, and the next calls neither loop nor ask wxtoken
//     within the Retry-After of its 429.
func TestWxJava(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	dir := filepath.Join(repo, ".cache", "wxjava")
	tool(t, filepath.Join(dir, ".installed"), "the WxJava adapter (make .cache/wxjava/.installed)")
	jar := tool(t, filepath.Join(dir, "build", "wxtoken-wxjava.jar"), "the WxJava adapter's jar (make .cache/wxjava/.installed)")
	java, err := exec.LookPath("java")
	if err != nil {
		if os.Getenv("WXTOKEN_TESTBED") == "required" {
			t.Fatal("java not found: install a JDK 17 or newer")
		}
		t.Skip("java not found")
	}
	classpath := filepath.Join(dir, "lib", "*") + string(os.PathListSeparator) + jar

	mp := registry.App{Name: "news", AppID: wxjavaMPAppID, Kind: registry.OfficialAccount, Mode: registry.Classic}
	cp := registry.App{Name: "office", AppID: wxjavaCorpID, Kind: registry.WeCom, Mode: registry.GetToken}
	st := stacktest.New(t, stacktest.Options{}, mp, cp)

	for _, tc := range []struct {
		kind string
		app  registry.App
		// business is a cost of n of WxJava's business calls.
		business func(n int) wxjavaCost
	}{
		{"mp", mp, func(n int) wxjavaCost { return wxjavaCost{CallbackIP: n} }},
		{"cp", cp, func(n int) wxjavaCost { return wxjavaCost{DomainIP: n} }},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			appID := tc.app.AppID
			plus := func(c wxjavaCost, o wxjavaCost) wxjavaCost {
				return wxjavaCost{c.Requests + o.Requests, c.BadSignatures + o.BadSignatures, c.TokenCalls + o.TokenCalls,
					c.CallbackIP + o.CallbackIP, c.DomainIP + o.DomainIP}
			}
			// wxtoken's refresh of a claimed-stale token: one request, one
			// check of the published token (get_api_domain_ip).
			refresh := wxjavaCost{Requests: 1, DomainIP: 1}
			advance := func() { st.Sandbox.Clock().Advance(2 * time.Minute) } // past the minimum interval between on-demand refreshes

			st.Publish(tc.app.Name)
			// The first command waits for the JVM's SSM client: 60 s.
			demo := startDriver(t, "", childEnv(), 60*time.Second,
				java, "-cp", classpath, wxjavaMainName, st.APIURL, tc.app.Name, st.Prefix, tc.kind, st.Sandbox.URL, appID)
			steps := []struct {
				name    string
				setup   func()
				cmd     string
				ok      bool
				errcode int
				want    wxjavaCost
			}{
				{name: "WxJava's call succeeds with the published token", cmd: "call",
					ok: true, want: tc.business(1)},
				{name: "the cached token serves the next call: no request to wxtoken", cmd: "call",
					ok: true, want: tc.business(1)},
				{name: "WeChat revoked the token: one refresh through wxtoken (the only token call), then WxJava's retry succeeds",
					setup: func() { advance(); st.Sandbox.Revoke(appID) }, cmd: "call",
					ok: true, want: plus(plus(refresh, wxjavaCost{TokenCalls: 1}), tc.business(2))},
				{name: "the new token serves the next call", cmd: "call",
					ok: true, want: tc.business(1)},
				{name: "WxJava's forced refresh (getAccessToken(true)) asks wxtoken, which keeps the token WeChat accepts",
					setup: advance, cmd: "refresh",
					ok: true, want: refresh},
				{name: "WeChat rejects every token: wxtoken refreshes (one token call), WxJava's one retry fails, no loop",
					setup: func() {
						advance()
						for _, path := range []string{wechattest.PathCallbackIP, wechattest.PathDomainIP} {
							st.Sandbox.Inject(wechattest.Fault{Path: path, AppID: appID, ErrCode: 40001})
						}
					}, cmd: "call",
					errcode: 40001, want: plus(plus(refresh, wxjavaCost{TokenCalls: 1}), tc.business(2))},
				{name: "wxtoken refuses another refresh so soon (429 with the current token): one retry, then the call fails",
					cmd: "call", errcode: 40001, want: plus(wxjavaCost{Requests: 1}, tc.business(2))},
				{name: "within the 429's Retry-After the adapter does not ask wxtoken again",
					cmd: "call", errcode: 40001, want: tc.business(2)},
			}
			for _, s := range steps {
				if s.setup != nil {
					s.setup()
				}
				before := wxjavaSnapshot(st, appID)
				var got wxjavaAnswer
				err := demo.send(s.cmd, &got)
				cost := wxjavaSnapshot(st, appID).minus(before)
				if err != nil {
					t.Fatalf("%s: %v\ncost so far %+v (last signature error: %v)", s.name, err, cost, st.LastSignatureError.Load())
				}
				if got.OK != s.ok || got.Errcode != s.errcode || got.Error != "" {
					t.Errorf("%s: %s answered %+v, want ok=%v errcode=%d", s.name, s.cmd, got, s.ok, s.errcode)
				}
				if cost != s.want {
					t.Errorf("%s: cost %+v, want %+v", s.name, cost, s.want)
				}
			}
			st.Sandbox.ClearFaultsOf(appID)
			if t.Failed() {
				t.Logf("Demo stderr:\n%s", demo.stderr)
			}
		})
	}
}

// TestWxJavaREADMEQuotesUsage checks that the adapter's README quotes the
// example it compiles (Usage.java, which the Demo runs) verbatim.
func TestWxJavaREADMEQuotesUsage(t *testing.T) {
	readme, err := os.ReadFile("wxjava/README.md")
	if err != nil {
		t.Fatal(err)
	}
	const usage = "wxjava/src/main/java/io/github/wxtoken/wxjava/Usage.java"
	if s := snippet(t, usage); !strings.Contains(string(readme), s) {
		t.Errorf("wxjava/README.md does not quote %s's example verbatim; copy it:\n%s", usage, s)
	}
}
