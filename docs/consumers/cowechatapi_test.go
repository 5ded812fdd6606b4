package consumers_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const coWechatAppID = "wxcowechatapi001"

// nodeBin is the node on PATH.
func nodeBin(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found")
	}
	return node
}

// stepCost is what one step of an adapter test costs.
type stepCost struct {
	// Requests to wxtoken's API, of which BadSignatures failed SigV4.
	Requests, BadSignatures int
	// TokenCalls reached WeChat's token endpoints (the refresher's and, if
	// it did, the SDK's own); IPCalls its getcallbackip.
	TokenCalls, IPCalls int
}

func costSnapshot(st *stacktest.Stack, appID string) stepCost {
	return stepCost{
		Requests: int(st.Requests.Load()), BadSignatures: int(st.BadSignatures.Load()),
		TokenCalls: st.Sandbox.TokenCalls(appID), IPCalls: st.Sandbox.Calls(wechattest.PathCallbackIP, appID),
	}
}

func (c stepCost) minus(o stepCost) stepCost {
	return stepCost{c.Requests - o.Requests, c.BadSignatures - o.BadSignatures, c.TokenCalls - o.TokenCalls, c.IPCalls - o.IPCalls}
}

// TestCoWechatAPI runs the real co-wechat-api through the adapter
// (docs/consumers/co-wechat-api) against the local stack: its getIp
// (getcallbackip) succeeds with the published token; after WeChat revokes
// the token the next call succeeds after exactly one refresh through
// wxtoken; the SDK never calls WeChat's token endpoint (every token call is
// the refresher's); and a token WeChat still rejects after the refresh
// fails the call after one retry, with no loop.
func TestCoWechatAPI(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	modules := tool(t, filepath.Join(repo, ".cache", "co-wechat-api", "node_modules"), "co-wechat-api (make .cache/co-wechat-api/.installed)")
	app := registry.App{Name: "shop", AppID: coWechatAppID, Kind: registry.OfficialAccount, Mode: registry.Classic}
	st := stacktest.New(t, stacktest.Options{}, app)
	st.Publish("shop")
	sdk := startDriver(t, "co-wechat-api", childEnv("NODE_PATH="+modules), 30*time.Second,
		nodeBin(t), "driver.js", st.APIURL, "shop", coWechatAppID, st.Prefix, asWeChatWrites(t, st.Sandbox.URL))

	steps := []struct {
		name string
		// setup runs before the SDK's call.
		setup   func()
		ok      bool
		errcode int
		want    stepCost
	}{
		{name: "the SDK's call succeeds with the published token",
			ok: true, want: stepCost{IPCalls: 1}},
		{name: "the cached token serves the next call: no request to wxtoken",
			ok: true, want: stepCost{IPCalls: 1}},
		{name: "WeChat revoked the token: one refresh through wxtoken (the only token call), then the retry succeeds",
			setup: func() {
				st.Sandbox.Clock().Advance(2 * time.Minute) // past the minimum interval between on-demand refreshes
				st.Sandbox.Revoke(coWechatAppID)
			},
			ok: true, want: stepCost{Requests: 1, TokenCalls: 1, IPCalls: 2}},
		{name: "the new token serves the next call",
			ok: true, want: stepCost{IPCalls: 1}},
		{name: "WeChat rejects every token: wxtoken checks the claim and refreshes (one token call), the retry fails, no loop",
			setup: func() {
				st.Sandbox.Clock().Advance(2 * time.Minute)
				for _, path := range []string{wechattest.PathCallbackIP, wechattest.PathDomainIP} { // domain_ip: wxtoken's check
					st.Sandbox.Inject(wechattest.Fault{Path: path, AppID: coWechatAppID, ErrCode: 40001})
				}
			},
			errcode: 40001, want: stepCost{Requests: 1, TokenCalls: 1, IPCalls: 2}},
		{name: "wxtoken refuses another refresh so soon (429 with the current token): one retry, then the call fails",
			errcode: 40001, want: stepCost{Requests: 1, IPCalls: 2}},
		{name: "within the 429's Retry-After the adapter does not ask wxtoken again",
			errcode: 40001, want: stepCost{IPCalls: 2}},
	}
	for _, s := range steps {
		if s.setup != nil {
			s.setup()
		}
		before := costSnapshot(st, coWechatAppID)
		var got struct {
			OK      bool `json:"ok"`
			Errcode int  `json:"errcode"`
		}
		err := sdk.send("call", &got)
		cost := costSnapshot(st, coWechatAppID).minus(before)
		if err != nil {
			t.Fatalf("%s: %v\ncost so far %+v", s.name, err, cost)
		}
		if got.OK != s.ok || got.Errcode != s.errcode {
			t.Errorf("%s: the call answered ok=%v errcode=%d, want ok=%v errcode=%d", s.name, got.OK, got.Errcode, s.ok, s.errcode)
		}
		if cost != s.want {
			t.Errorf("%s: cost %+v, want %+v", s.name, cost, s.want)
		}
	}
	if t.Failed() {
		t.Logf("driver stderr:\n%s", sdk.stderr)
	}
}

// asWeChatWrites serves the sandbox at sandboxURL with its JSON answers
// ending where WeChat's do, at the closing brace: the sandbox adds a newline
// (json.Encoder), which co-wechat-api's request() turns into the characters
// \n (replaceJSONCtlChars) and then fails to parse.
func asWeChatWrites(t *testing.T, sandboxURL string) string {
	t.Helper()
	target, err := url.Parse(sandboxURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		body = bytes.TrimSuffix(body, []byte("\n"))
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCoWechatAPIPinsTheSnippetsSDK checks that the adapter installs the
// AWS SDK packages at the versions the Node.js snippet is tested with.
func TestCoWechatAPIPinsTheSnippetsSDK(t *testing.T) {
	deps := func(file string) map[string]string {
		t.Helper()
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Dependencies map[string]string }
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return p.Dependencies
	}
	snippet, adapter := deps("package.json"), deps("co-wechat-api/package.json")
	for name, want := range snippet {
		if got := adapter[name]; got != want {
			t.Errorf("co-wechat-api/package.json pins %s %q, want %q as package.json", name, got, want)
		}
	}
	for name, v := range adapter {
		if strings.Trim(v, "0123456789.") != "" {
			t.Errorf("co-wechat-api/package.json: %s %q is not an exact version", name, v)
		}
	}
}
