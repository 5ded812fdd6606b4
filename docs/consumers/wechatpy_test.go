package consumers_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// TestWechatpy runs the real wechatpy 1.8.18 (installed by the Makefile into
// .cache/wechatpy) through the adapter in docs/consumers/wechatpy, for an
// Official Account and for WeCom: its own business call
// (client.misc.get_wechat_ips, getcallbackip) succeeds with the token
// wxtoken published; after WeChat revokes it, the next call succeeds after
// exactly one refresh request to wxtoken; wechatpy never calls WeChat's
// token endpoints; and when wxtoken's answer is still rejected the call
// fails after one retry instead of wechatpy's unbounded one.
func TestWechatpy(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	python := tool(t, filepath.Join(repo, ".cache", "wechatpy", "bin", "python"), "wechatpy (make .cache/wechatpy/.installed)")
	apps := []struct {
		kind string // the driver's client: oa or wecom
		app  registry.App
	}{
		{"oa", registry.App{Name: "shop", AppID: "wxwechatpy000001", Kind: registry.OfficialAccount, Mode: registry.Classic}},
		{"wecom", registry.App{Name: "office", AppID: "wwwechatpy000001", Kind: registry.WeCom, Mode: registry.GetToken}},
	}
	st := stacktest.New(t, stacktest.Options{}, apps[0].app, apps[1].app)
	for _, tt := range apps {
		t.Run(tt.kind, func(t *testing.T) {
			appID := tt.app.AppID
			st.Sandbox.Clock().Advance(2 * time.Minute)
			st.Publish(tt.app.Name)
			driver := startDriver(t, "", childEnv("PYTHONPATH="+repo+"/docs/consumers"), 30*time.Second, python,
				filepath.Join(repo, "docs", "consumers", "wechatpy", "driver.py"),
				tt.kind, appID, st.APIURL, tt.app.Name, st.Prefix, st.Sandbox.URL)

			type result struct {
				OK      bool
				Errcode int
				Error   string
			}
			// call makes the SDK's business call and checks what it cost:
			// refresh requests to wxtoken, calls on WeChat's token
			// endpoints (wxtoken's own), and business calls.
			call := func(t *testing.T, wantOK bool, wantRefreshes, wantTokenCalls, wantBusiness int) result {
				t.Helper()
				req, bad := st.Requests.Load(), st.BadSignatures.Load()
				tok, biz := st.Sandbox.TokenCalls(appID), st.Sandbox.Calls(wechattest.PathCallbackIP, appID)
				var got result
				driver.do(t, "call", &got)
				if got.OK != wantOK {
					t.Errorf("call: %+v, want ok=%v", got, wantOK)
				}
				if n := int(st.Requests.Load() - req); n != wantRefreshes {
					t.Errorf("call: %d requests to wxtoken, want %d", n, wantRefreshes)
				}
				if n := st.BadSignatures.Load() - bad; n != 0 {
					t.Errorf("call: %d requests to wxtoken failed the SigV4 check", n)
				}
				if n := st.Sandbox.TokenCalls(appID) - tok; n != wantTokenCalls {
					t.Errorf("call: %d calls on WeChat's token endpoints, want %d (wxtoken's own)", n, wantTokenCalls)
				}
				if n := st.Sandbox.Calls(wechattest.PathCallbackIP, appID) - biz; n != wantBusiness {
					t.Errorf("call: %d getcallbackip calls, want %d", n, wantBusiness)
				}
				return got
			}

			// 1. The published token: no refresh, no token call.
			call(t, true, 0, 0, 1)
			call(t, true, 0, 0, 1)

			// 2. WeChat rejects it: one refresh through wxtoken (its one
			// call on WeChat's token endpoint), the call retried once.
			st.Sandbox.Clock().Advance(2 * time.Minute)
			st.Sandbox.Revoke(appID)
			call(t, true, 1, 1, 2)
			call(t, true, 0, 0, 1) // the new token is kept

			// 4. Rejected again within the app's minimum interval between
			// on-demand refreshes: wxtoken answers 429 with the current
			// token, which WeChat still rejects: the call fails after one
			// retry, and the next one does not ask wxtoken before
			// Retry-After.
			st.Sandbox.Revoke(appID)
			if got := call(t, false, 1, 0, 2); got.Errcode != 40001 {
				t.Errorf("bounded retry: %+v, want errcode 40001", got)
			}
			if got := call(t, false, 0, 0, 2); got.Errcode != 40001 {
				t.Errorf("bounded retry, Retry-After: %+v, want errcode 40001", got)
			}
		})
	}
}
