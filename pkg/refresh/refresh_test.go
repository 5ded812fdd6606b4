package refresh_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// publish runs one scheduled refresh so that the app has a token, and
// returns it.
func publish(t *testing.T, b *bed, app string) string {
	t.Helper()
	rep := mustRefreshDue(t, b.refresher("setup"))
	if rep.Count("refreshed") == 0 {
		t.Fatalf("setup: nothing refreshed: %+v", rep.Outcomes)
	}
	tok, _ := b.published(app)
	return tok
}

// TestCoalescing is issue test 1: 100 concurrent on-demand refreshes, each
// with SDK clients of its own, carrying the same stale token, cost exactly
// one WeChat token call, all get the same new token, and the published
// Version goes up by exactly one.
func TestCoalescing(t *testing.T) {
	for _, mode := range []registry.Mode{registry.Classic, registry.Stable} {
		t.Run(string(mode), func(t *testing.T) {
			b := newBed(t, wechattest.Config{})
			a := b.app(appNamed("shop", registry.OfficialAccount, mode))
			stale := publish(t, b, a.Name)
			_, v0 := b.published(a.Name)
			b.sb.Revoke(a.AppID) // WeChat now rejects the published token
			calls0 := b.sb.TokenCalls(a.AppID)

			const n = 100
			refreshers := make([]*refresh.Refresher, n)
			for i := range refreshers {
				refreshers[i] = b.refresher(fmt.Sprintf("instance-%03d", i), func(r *refresh.Refresher) {
					r.WaitTimeout = 30 * time.Second
				})
			}
			results := make([]refresh.Result, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range refreshers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					results[i], errs[i] = refreshers[i].Refresh(ctxT(t), a.Name, stale)
				}()
			}
			close(start)
			wg.Wait()

			if got := b.sb.TokenCalls(a.AppID) - calls0; got != 1 {
				t.Errorf("%d WeChat token calls for %d concurrent refreshes, want exactly 1", got, n)
			}
			pub, v1 := b.published(a.Name)
			for i := range results {
				if errs[i] != nil {
					t.Fatalf("caller %d: %v", i, errs[i])
				}
				if results[i].Token != pub || !results[i].Refreshed {
					t.Fatalf("caller %d got %v, want the published token %s", i, results[i], "(fp)")
				}
			}
			if pub == stale || b.sb.Check(pub) != 0 {
				t.Errorf("published token is stale or rejected by WeChat (errcode %d)", b.sb.Check(pub))
			}
			if v1 != v0+1 {
				t.Errorf("published Version went from %d to %d, want +1", v0, v1)
			}
			b.saw(stale, pub)
		})
	}
}

// TestStaleTokenNoLongerPublished is issue test 2: a stale token that is not
// the published one is answered from SSM with zero WeChat calls.
func TestStaleTokenNoLongerPublished(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	cur := publish(t, b, a.Name)
	before := b.sb.TokenCalls(a.AppID) + b.sb.Calls(wechattest.PathDomainIP, a.AppID) + b.sb.Calls(wechattest.PathDomainIP, "")

	res, err := b.refresher("api").Refresh(ctxT(t), a.Name, "an-older-token-someone-cached")
	if err != nil {
		t.Fatal(err)
	}
	after := b.sb.TokenCalls(a.AppID) + b.sb.Calls(wechattest.PathDomainIP, a.AppID) + b.sb.Calls(wechattest.PathDomainIP, "")
	if after != before {
		t.Errorf("%d WeChat calls, want 0", after-before)
	}
	if res.Token != cur || !res.Refreshed || res.ExpiresAt.IsZero() {
		t.Errorf("got %v (expires %v), want the published token, marked newer than the caller's, with its expiry", res, res.ExpiresAt)
	}
}

// TestScheduledRacesOnDemand is issue test 3: a scheduled run racing an
// on-demand refresh of the same app costs one WeChat call, whoever wins.
func TestScheduledRacesOnDemand(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	publish(t, b, a.Name)
	for round := 0; round < 8; round++ {
		b.sb.Clock().Advance(101 * time.Minute) // due, and past the minimum interval
		stale, _ := b.published(a.Name)
		b.sb.Revoke(a.AppID) // and rightly claimed invalid
		before := b.sb.TokenCalls(a.AppID)

		sched, api := b.refresher("scheduler"), b.refresher("api")
		var wg sync.WaitGroup
		var apiRes refresh.Result
		var apiErr error
		wg.Add(2)
		go func() { defer wg.Done(); mustRefreshDue(t, sched) }()
		go func() {
			defer wg.Done()
			if round%2 == 1 {
				time.Sleep(time.Duration(round) * time.Millisecond)
			}
			apiRes, apiErr = api.Refresh(ctxT(t), a.Name, stale)
		}()
		wg.Wait()
		if apiErr != nil {
			t.Fatalf("round %d: on-demand: %v", round, apiErr)
		}
		if got := b.sb.TokenCalls(a.AppID) - before; got != 1 {
			t.Errorf("round %d: %d WeChat token calls, want 1", round, got)
		}
		pub, _ := b.published(a.Name)
		if apiRes.Token != pub || pub == stale {
			t.Errorf("round %d: on-demand caller did not get the new published token", round)
		}
		b.saw(stale, pub)
	}
}

// TestVerifyBeforeRefresh is issue test 7: a false claim that the published
// token is invalid causes no refresh; a true one does. WeCom tokens are
// checked and fetched through WeCom's APIs.
func TestVerifyBeforeRefresh(t *testing.T) {
	tests := []struct {
		name      string
		kind      registry.Kind
		mode      registry.Mode
		tokenPath string // the credential API the refresh must use
	}{
		{"offiaccount stable", registry.OfficialAccount, registry.Stable, wechattest.PathStableToken},
		{"wecom", registry.WeCom, "", wechattest.PathGetToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBed(t, wechattest.Config{})
			a := b.app(appNamed("shop", tt.kind, tt.mode))
			tok := publish(t, b, a.Name)
			api := b.refresher("api")
			before := b.sb.TokenCalls(a.AppID)
			beforePath := b.sb.Calls(tt.tokenPath, a.AppID)

			res, err := api.Refresh(ctxT(t), a.Name, tok)
			if err != nil {
				t.Fatal(err)
			}
			if res.Token != tok || res.Refreshed {
				t.Errorf("false claim: got %v, want the same token, not refreshed", res)
			}
			if got := b.sb.TokenCalls(a.AppID) - before; got != 0 {
				t.Errorf("false claim cost %d token calls, want 0", got)
			}
			if b.sb.Calls(wechattest.PathDomainIP, a.AppID) != 1 {
				t.Errorf("the claim was not checked with WeChat exactly once")
			}

			// A claim within VerifiedFor of WeChat's acceptance is answered
			// without asking again (P8); after it, the claim is checked.
			b.sb.Revoke(a.AppID)
			b.sb.Clock().Advance(refresh.DefaultVerifiedFor)
			res, err = api.Refresh(ctxT(t), a.Name, tok)
			if err != nil {
				t.Fatal(err)
			}
			if res.Token == tok || !res.Refreshed || b.sb.Check(res.Token) != 0 {
				t.Errorf("true claim: got %v, want a new valid token", res)
			}
			if got := b.sb.TokenCalls(a.AppID) - before; got != 1 {
				t.Errorf("true claim cost %d token calls, want 1", got)
			}
			if got := b.sb.Calls(tt.tokenPath, a.AppID) - beforePath; got != 1 {
				t.Errorf("true claim made %d calls to %s, want 1", got, tt.tokenPath)
			}
			b.saw(res.Token)
		})
	}
}

// TestBudgetAndMinInterval is issue test 8: both refuse with the typed error
// and the current token.
func TestBudgetAndMinInterval(t *testing.T) {
	t.Run("minimum interval", func(t *testing.T) {
		b := newBed(t, wechattest.Config{})
		app := appNamed("shop", registry.OfficialAccount, registry.Classic)
		app.MinInterval = 5 * time.Minute
		a := b.app(app)
		publish(t, b, a.Name)
		api := b.refresher("api")
		claim := func() (refresh.Result, error) {
			stale, _ := b.published(a.Name)
			b.sb.Revoke(a.AppID)
			return api.Refresh(ctxT(t), a.Name, stale)
		}
		first, err := claim()
		if err != nil {
			t.Fatal(err)
		}
		b.sb.Clock().Advance(time.Minute)
		_, err = claim()
		var refused *refresh.RefusedError
		if !errors.As(err, &refused) || refused.Reason != refresh.ReasonMinInterval {
			t.Fatalf("second claim a minute later: got %v, want RefusedError(min_interval)", err)
		}
		if refused.Current.Token != first.Token || refused.RetryAfter != 4*time.Minute {
			t.Errorf("refusal carries %v, retry after %v; want the current token and 4m", refused.Current, refused.RetryAfter)
		}
		b.sb.Clock().Advance(4 * time.Minute)
		if _, err := claim(); err != nil {
			t.Errorf("claim after the interval: %v", err)
		}
		b.saw(first.Token)
	})
	t.Run("daily budget", func(t *testing.T) {
		// Callers may spend the budget less the schedule's reserve: with a
		// budget of 4 the reserve is 2, so the second call of the day is
		// the last a claim may make; the schedule keeps the other two.
		b := newBed(t, wechattest.Config{})
		app := appNamed("shop", registry.OfficialAccount, registry.Classic)
		app.DailyBudget = 4
		app.MinInterval = time.Second
		if r := refresh.ScheduleReserve(decoded(t, app)); r != 2 {
			t.Fatalf("setup: ScheduleReserve = %d, want 2", r)
		}
		a := b.app(app)
		publish(t, b, a.Name) // call 1
		api := b.refresher("api")
		stale, _ := b.published(a.Name)
		b.sb.Revoke(a.AppID)
		second, err := api.Refresh(ctxT(t), a.Name, stale) // call 2
		if err != nil {
			t.Fatal(err)
		}
		b.sb.Clock().Advance(time.Minute)
		b.sb.Revoke(a.AppID)
		before := b.sb.TokenCalls(a.AppID)
		_, err = api.Refresh(ctxT(t), a.Name, second.Token)
		var refused *refresh.RefusedError
		if !errors.As(err, &refused) || refused.Reason != refresh.ReasonDailyBudget {
			t.Fatalf("third call of the day, the first of the schedule's reserve: got %v, want RefusedError(daily_budget)", err)
		}
		if refused.Current.Token != second.Token || refused.RetryAfter <= 0 || refused.RetryAfter > 24*time.Hour {
			t.Errorf("refusal carries %v, retry after %v", refused.Current, refused.RetryAfter)
		}
		if b.sb.TokenCalls(a.AppID) != before {
			t.Error("a refused refresh called WeChat")
		}
		if st := b.state(a.Name); st.CallsToday != 2 {
			t.Errorf("calls_today = %d, want 2", st.CallsToday)
		}
		// The schedule still refreshes: its reserve is untouched.
		b.sb.Clock().Advance(2*time.Hour - refresh.DefaultStableWindow)
		if rep := mustRefreshDue(t, b.refresher("scheduler")); rep.Count(refresh.StatusRefreshed) != 1 {
			t.Errorf("scheduled run after the callers' share was spent: %+v, want refreshed", rep.Outcomes)
		}
		b.sb.Clock().Advance(24 * time.Hour)
		third, _ := b.published(a.Name)
		b.sb.Revoke(a.AppID)
		if _, err := api.Refresh(ctxT(t), a.Name, third); err != nil {
			t.Errorf("next day: %v", err)
		}
		b.saw(second.Token, stale, third)
	})
}

// TestRemovedAppStateIsCleanedUp: the state of an app whose registration was
// deleted gets a TTL, DynamoDB's cleanup, and nothing else uses the TTL; an
// app registered again loses the TTL at its next refresh, so that DynamoDB
// never deletes the live state (lease, generation, budget) of a served app.
func TestRemovedAppStateIsCleanedUp(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("gone", registry.OfficialAccount, registry.Stable))
	b.app(appNamed("kept", registry.OfficialAccount, registry.Stable))
	publish(t, b, a.Name)
	if st := b.state(a.Name); !st.CleanupAt.IsZero() {
		t.Fatalf("a registered app's state has a TTL: %v", st.CleanupAt)
	}
	b.removeApp("gone")
	mustRefreshDue(t, b.refresher("scheduler"))
	if st := b.state("gone"); st.CleanupAt.Sub(b.sb.Now()) != refresh.DefaultCleanupAfter {
		t.Errorf("removed app's state cleanup at %v, want %v from now", st.CleanupAt, refresh.DefaultCleanupAfter)
	}
	if st := b.state("kept"); !st.CleanupAt.IsZero() {
		t.Errorf("a registered app's state got a TTL")
	}

	// Registered again: the next refresh of the app clears the TTL and
	// keeps its history.
	b.app(a)
	before := b.state(a.Name)
	b.sb.Clock().Advance(2*time.Hour - 4*time.Minute) // inside the stable window: due
	if rep := mustRefreshDue(t, b.refresher("scheduler")); rep.Count("refreshed") != 2 {
		t.Fatalf("outcomes %+v, want both apps refreshed", rep.Outcomes)
	}
	st := b.state(a.Name)
	if !st.CleanupAt.IsZero() {
		t.Errorf("the app registered again still has a TTL: DynamoDB deletes its state at %v", st.CleanupAt)
	}
	if st.Generation != before.Generation+1 {
		t.Errorf("generation %d after the refresh, want %d", st.Generation, before.Generation+1)
	}
	mustRefreshDue(t, b.refresher("scheduler"))
	if st := b.state(a.Name); !st.CleanupAt.IsZero() {
		t.Errorf("a registered app's state got a TTL again: %v", st.CleanupAt)
	}
}

// decoded is app as the registry reads it back, with its defaults applied.
func decoded(t *testing.T, app registry.App) registry.App {
	t.Helper()
	a, err := registry.Decode(app.Name, registry.Item(app))
	if err != nil {
		t.Fatal(err)
	}
	return a
}
