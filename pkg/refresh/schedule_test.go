package refresh_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// scheduleRate is the template's default ScheduleRate, rate(1 minute).
const scheduleRate = time.Minute

// TestDayOnTheSandboxClock is issue test 6: 24 simulated hours with the
// scheduled refresher ticking at its default rate. A token read from SSM at
// any instant (every simulated 10 s) is accepted by WeChat; classic mode
// makes at most 15 token calls; stable mode picks up every rotation inside
// WeChat's final window.
func TestDayOnTheSandboxClock(t *testing.T) {
	for _, mode := range []registry.Mode{registry.Classic, registry.Stable} {
		t.Run(string(mode), func(t *testing.T) {
			b := newBed(t, wechattest.Config{})
			a := b.app(appNamed("shop", registry.OfficialAccount, mode))
			sched := b.refresher("scheduler")
			start := b.sb.Now()
			end := start.Add(24 * time.Hour)
			var prev string
			var prevExpiry time.Time
			rotations := 0
			for now := start; now.Before(end); now = b.sb.Now() {
				mustRefreshDue(t, sched) // one tick of the schedule
				for s := 0; s < int(scheduleRate/(10*time.Second)); s++ {
					tok, _ := b.published(a.Name)
					if code := b.sb.Check(tok); code != 0 {
						t.Fatalf("at +%v the published token is rejected with errcode %d", b.sb.Now().Sub(start), code)
					}
					if tok != prev {
						_, exp := b.sb.Current(a.AppID, apiOf(mode))
						if prev != "" && mode == registry.Stable {
							left := prevExpiry.Sub(b.sb.Now())
							if left <= 0 || left > 300*time.Second {
								t.Errorf("stable rotation at +%v with %v left on the old token; want inside the final 300 s", b.sb.Now().Sub(start), left)
							}
						}
						if prev != "" {
							rotations++
						}
						prev, prevExpiry = tok, exp
					}
					b.sb.Clock().Advance(10 * time.Second)
				}
			}
			calls := b.sb.TokenCalls(a.AppID)
			t.Logf("%s: %d token calls and %d rotations in 24 h", mode, calls, rotations)
			if mode == registry.Classic && calls > 15 {
				t.Errorf("classic mode made %d token calls in a day, want at most 15", calls)
			}
			if rotations < 10 {
				t.Errorf("only %d rotations in a day; the token must be renewed about every 2 h", rotations)
			}
			// P9 must not cry wolf: nobody else fetched, so no drift.
			if st := b.state(a.Name); st.DriftCount != 0 {
				t.Errorf("%d drifts reported (last at +%v) in a day when only wxtoken fetched, want 0", st.DriftCount, st.LastDriftAt.Sub(start))
			}
			b.saw(prev)
		})
	}
}

func apiOf(m registry.Mode) wechattest.API {
	if m == registry.Classic {
		return wechattest.Classic
	}
	return wechattest.Stable
}

// TestThousandApps is issue test 10: 1,000 registered apps of every kind are
// refreshed in one scheduled run with bounded concurrency (at most
// Concurrency WeChat calls in flight, and more than one); three broken apps
// fail alone and are reported.
func TestThousandApps(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	const n = 1000
	apps := make([]registry.App, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range apps {
		kind, mode := registry.OfficialAccount, registry.Stable
		switch {
		case i%5 == 1:
			kind, mode = registry.WeCom, "" // the registry's default: gettoken
		case i%3 == 0:
			mode = registry.Classic
		}
		apps[i] = appNamed(fmt.Sprintf("app-%04d", i), kind, mode)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b.app(apps[i])
		}()
	}
	wg.Wait()
	// Three broken apps: a wrong secret, no secret, a malformed item.
	wrong := b.app(appNamed("broken-secret", registry.OfficialAccount, registry.Stable))
	b.putSecret(wrong.Name, "not-the-secret")
	b.putItem(appNamed("broken-nosecret", registry.MiniProgram, registry.Classic))
	b.putRawItem("broken-kind", map[string]ddbtypes.AttributeValue{
		"pk":    &ddbtypes.AttributeValueMemberS{Value: "app#broken-kind"},
		"appid": &ddbtypes.AttributeValueMemberS{Value: "wx0"},
		"kind":  &ddbtypes.AttributeValueMemberS{Value: "fax-machine"},
	})

	const concurrency = 8
	var inFlight, peak atomic.Int64
	r := b.refresher("scheduler", func(r *refresh.Refresher) {
		r.Concurrency = concurrency
		r.WeChat = &hookedWeChat{WeChat: r.WeChat, fetch: func(ctx context.Context, call fetchFunc) (wechat.Token, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for p := peak.Load(); n > p; p = peak.Load() {
				if peak.CompareAndSwap(p, n) {
					break
				}
			}
			return call(ctx)
		}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := r.RefreshDue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "BENCH thousand-apps: %d apps refreshed in one scheduled run, concurrency 8, wall time %v\n", rep.Count("refreshed"), rep.Elapsed.Round(time.Millisecond))
	t.Logf("at most %d WeChat calls in flight", peak.Load())
	if p := peak.Load(); p > concurrency || p < 2 {
		t.Errorf("at most %d WeChat calls were in flight at once, want 2..%d (Concurrency)", p, concurrency)
	}

	if rep.Apps != n+3 || rep.Count("refreshed") != n {
		t.Errorf("%d apps listed, %d refreshed; want %d and %d", rep.Apps, rep.Count("refreshed"), n+3, n)
	}
	broken := map[string]refresh.RunStatus{}
	for _, o := range rep.Outcomes {
		if o.Status == "failed" || o.Status == "invalid" {
			broken[o.App] = o.Status
			if o.Err == nil {
				t.Errorf("%s is %s without an error", o.App, o.Status)
			}
		}
	}
	want := map[string]refresh.RunStatus{"broken-secret": "failed", "broken-nosecret": "failed", "broken-kind": "invalid"}
	for app, status := range want {
		if broken[app] != status {
			t.Errorf("%s reported %q, want %q", app, broken[app], status)
		}
	}
	if len(broken) != 3 {
		t.Errorf("broken apps reported: %v, want exactly the three", broken)
	}
	for _, i := range []int{0, 1, 499, 996, 998, 999} {
		tok, _ := b.published(apps[i].Name)
		if b.sb.Check(tok) != 0 {
			t.Errorf("%s (%s): published token rejected", apps[i].Name, apps[i].Kind)
		}
	}
	wecom := 0
	for _, a := range apps {
		want := 0
		if a.Kind == registry.WeCom {
			want, wecom = 1, wecom+1
		}
		if got := b.sb.Calls(wechattest.PathGetToken, a.AppID); got != want {
			t.Errorf("%s (%s): %d gettoken calls, want %d", a.Name, a.Kind, got, want)
		}
	}
	if wecom != n/5 {
		t.Errorf("%d WeCom apps, want %d", wecom, n/5)
	}
}
