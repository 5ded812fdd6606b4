package refresh_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// These tests inject AWS faults through the in-memory fakes' hooks, so they
// run on the fakes whether or not the engines are up (the fault matrix stages
// the same faults against the engines through a proxy).

// TestPublishFailureKeepsIssuedTokenFakes is review C4 / issue point 12 on the
// fakes: a classic token whose publish fails is kept (sealed, never in plain
// text) and published by the next run instead of fetching another, and a
// caller who asks meanwhile is handed it.
func TestPublishFailureKeepsIssuedTokenFakes(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	t1 := publish(t, b, a.Name)
	var failing atomic.Bool
	b.fakes.store.SetFault(func(op tokenstoretest.Op, _ string) tokenstoretest.Fault {
		if op == tokenstoretest.OpPut && failing.Load() {
			return tokenstoretest.Fault{Err: tokenstoretest.Throttled()}
		}
		return tokenstoretest.Fault{}
	})
	sched, api := b.refresher("scheduler"), b.refresher("api")

	b.sb.Clock().Advance(101 * time.Minute) // due
	failing.Store(true)
	rep := mustRefreshDue(t, sched)
	if rep.Count(refresh.StatusFailed) != 1 {
		t.Fatalf("run while SSM refuses writes: %+v, want the app failed", rep.Outcomes)
	}
	issued := b.sb.TokensIssued(a.AppID)
	st := b.state(a.Name)
	if st.Pending == "" || st.Version != 0 {
		t.Fatalf("state after the failed publish: pending %v, version %d; want a sealed token and version 0", st.Pending != "", st.Version)
	}
	for _, tok := range b.sb.Issued() {
		if strings.Contains(st.Pending, tok) {
			t.Fatal("the pending token is stored in plain text")
		}
	}
	// Runs while SSM is down do not fetch again.
	b.sb.Clock().Advance(time.Minute)
	mustRefreshDue(t, sched)
	if n := b.sb.TokensIssued(a.AppID); n != issued {
		t.Errorf("%d more tokens issued while SSM refused writes, want 0", n-issued)
	}

	// T1 dies 5 minutes after T2 was issued; a caller who claims it gets T2.
	b.sb.Clock().Advance(6 * time.Minute)
	if b.sb.Check(t1) == 0 {
		t.Fatal("setup: the published token is still valid")
	}
	res, err := api.Refresh(ctxT(t), a.Name, t1)
	if err != nil {
		t.Fatalf("claim while SSM refuses writes: %v", err)
	}
	if res.Token == t1 || b.sb.Check(res.Token) != 0 || !res.Refreshed || res.Version != 0 {
		t.Errorf("claim got %v (valid: %v), want the issued, unpublished token (version 0)", res, b.sb.Check(res.Token) == 0)
	}
	if n := b.sb.TokensIssued(a.AppID); n != issued {
		t.Errorf("%d more tokens issued for the claim, want 0", n-issued)
	}

	failing.Store(false)
	b.sb.Clock().Advance(time.Minute)
	rep = mustRefreshDue(t, sched)
	if rep.Count(refresh.StatusRefreshed) != 1 {
		t.Errorf("run after SSM recovered: %+v, want the sealed token published", rep.Outcomes)
	}
	if tok, _ := b.published(a.Name); tok != res.Token {
		t.Errorf("SSM holds fp %s, want the token handed to the caller (fp %s)", wechat.Fingerprint(tok), wechat.Fingerprint(res.Token))
	}
	if st := b.state(a.Name); st.Pending != "" || st.Version == 0 {
		t.Errorf("after the publish: pending kept %v, version %d; want the seal dropped and the version recorded", st.Pending != "", st.Version)
	}
	if n := b.sb.TokensIssued(a.AppID); n != issued {
		t.Errorf("%d more tokens issued in all, want 0", n-issued)
	}
	b.saw(t1, res.Token)
}

// TestCommitFailureRecordsItsOwnClassFakes is review C8 on the fakes: a
// commit DynamoDB throttles (not fenced) is recorded with its own class and
// no WeChat errcode, reported as a commit failure (not "fenced"), and the
// API answers it 503 with Retry-After (review A2).
func TestCommitFailureRecordsItsOwnClassFakes(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	events := &eventLog{}
	sched := b.refresher("scheduler", events.observe)
	b.sb.Inject(wechattest.Fault{Path: wechattest.PathToken, ErrCode: -1})
	mustRefreshDue(t, sched)
	if st := b.state(a.Name); st.LastErrCode != -1 {
		t.Fatalf("setup: last errcode %d, want -1", st.LastErrCode)
	}
	b.sb.ClearFaults()
	b.fakes.leases.SetFault(func(op leasetest.Op, _ string) leasetest.Fault {
		if op == leasetest.OpCommit {
			return leasetest.Fault{Err: leasetest.Throttled()}
		}
		return leasetest.Fault{}
	})
	b.sb.Clock().Advance(time.Minute)
	rep := mustRefreshDue(t, sched)
	var failed refresh.Outcome
	for _, o := range rep.Outcomes {
		failed = o
	}
	if failed.Status != refresh.StatusFailed {
		t.Fatalf("run with the commit throttled: %+v, want failed", rep.Outcomes)
	}
	st := b.state(a.Name)
	if st.LastErrCode != 0 || st.LastErrorClass != string(refresh.ClassUnavailable) {
		t.Errorf("recorded errcode %d class %q, want 0 and %q", st.LastErrCode, st.LastErrorClass, refresh.ClassUnavailable)
	}
	if got := events.outcomes(); len(got) == 0 || got[len(got)-1] != refresh.OutcomeCommitFailed {
		t.Errorf("events %v, want the last to be %s", got, refresh.OutcomeCommitFailed)
	}
	if d := refresh.Decide(failed.Err); d.HTTPStatus != 503 || d.Code != "aws_unavailable" || d.RetryAfter <= 0 {
		t.Errorf("decision %+v, want 503 aws_unavailable with a Retry-After", d)
	}
}

// TestSlowAppsNeverStarveOthers is review C3: apps whose WeChat calls hang,
// more than there are workers and more urgent (no token yet), never keep a
// healthy app from being refreshed in its window, run after run.
func TestSlowAppsNeverStarveOthers(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	healthy := b.app(appNamed("healthy", registry.OfficialAccount, registry.Stable))
	publish(t, b, healthy.Name)
	const hanging = 10
	for i := range hanging {
		a := b.app(appNamed("slow"+string(rune('a'+i)), registry.OfficialAccount, registry.Stable))
		b.sb.Inject(wechattest.Fault{AppID: a.AppID, Latency: wechattest.Duration(time.Minute)})
	}
	sched := b.refresher("scheduler", func(r *refresh.Refresher) {
		r.Concurrency, r.AttemptTimeout = 2, 200*time.Millisecond
		r.WeChat.(*wechat.Client).MaxAttempts = 1
	})
	_, exp := b.sb.Current(healthy.AppID, wechattest.Stable)
	// Into the healthy app's final window: due now, and every run after
	// this one until it is refreshed.
	b.sb.Clock().Set(exp.Add(-4 * time.Minute))
	for run := range 3 {
		// A run as the scheduled function has it: 47 s, real time.
		ctx, cancel := context.WithTimeout(context.Background(), 47*time.Second)
		rep, err := sched.RefreshDue(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range rep.Outcomes {
			switch {
			case o.App == healthy.Name && run == 0 && o.Status != refresh.StatusRefreshed:
				t.Errorf("run %d: the healthy app is %s (%v) behind %d hanging apps, want refreshed", run, o.Status, o.Err, hanging)
			case o.App != healthy.Name && o.Status == refresh.StatusDeferred:
				t.Errorf("run %d: %s deferred: the capped attempts should leave time for every app", run, o.App)
			}
		}
		tok, _ := b.published(healthy.Name)
		if b.sb.Check(tok) != 0 {
			t.Errorf("run %d: the healthy app's published token is not valid", run)
		}
		b.sb.Clock().Advance(time.Minute)
	}
}

// TestHolderDeadlineFromAcquisition is review C9: the holder's work deadline
// is counted from when the lease was taken, on the refresher's clock, so an
// Acquire that took most of the lease leaves no time for a WeChat call.
func TestHolderDeadlineFromAcquisition(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	slow := &slowAcquire{Fake: b.fakes.leases, clock: b.sb.Clock(), took: refresh.DefaultLeaseDuration - time.Second}
	r := b.refresher("slow", func(r *refresh.Refresher) { r.Leases = slow })
	if _, err := r.Refresh(ctxT(t), a.Name, ""); err == nil {
		t.Fatal("a refresh whose lease was all but spent by its Acquire succeeded")
	}
	if n := b.sb.TokenCalls(a.AppID); n != 0 {
		t.Errorf("%d WeChat calls with 1 s of lease left (margin 5 s), want 0", n)
	}
}

// slowAcquire is a lease table whose Acquire takes `took` on the clock.
type slowAcquire struct {
	*leasetest.Fake
	clock *wechattest.Clock
	took  time.Duration
}

func (s *slowAcquire) Acquire(ctx context.Context, app, owner string, now, until time.Time) (lease.State, error) {
	st, err := s.Fake.Acquire(ctx, app, owner, now, until)
	s.clock.Advance(s.took)
	return st, err
}

// TestVersionChecksArePaced is review C12: the scheduled run's SSM version
// checks are made by the workers, at most CheckRate a second, not back to
// back before the pool starts.
func TestVersionChecksArePaced(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	const apps, rate = 24, 20
	for i := range apps {
		b.app(appNamed("app"+string(rune('a'+i)), registry.OfficialAccount, registry.Stable))
	}
	mustRefreshDue(t, b.refresher("setup"))
	var mu sync.Mutex
	var at []time.Time
	b.fakes.store.SetFault(func(op tokenstoretest.Op, _ string) tokenstoretest.Fault {
		if op == tokenstoretest.OpVersion {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
		}
		return tokenstoretest.Fault{}
	})
	b.sb.Clock().Advance(time.Minute)
	rep := mustRefreshDue(t, b.refresher("scheduler", func(r *refresh.Refresher) { r.CheckEvery, r.CheckRate = time.Minute, rate }))
	if n := rep.Count(refresh.StatusNotDue); n != apps {
		t.Fatalf("%d apps not due, want %d", n, apps)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) != apps {
		t.Fatalf("%d version checks, want one per app (%d)", len(at), apps)
	}
	// Any window of a second holds at most rate+1 checks.
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < time.Second; j++ {
			n++
		}
		if n > rate+1 {
			t.Fatalf("%d version checks within one second, want at most %d (CheckRate)", n, rate+1)
		}
	}
}

// TestClaimsKeepTheScheduleReserve: callers' claims cannot spend the part of
// the daily budget the schedule needs, and a claim while the check cannot
// tell rotates nothing (review C2).
func TestClaimsKeepTheScheduleReserve(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	app := appNamed("shop", registry.OfficialAccount, registry.Classic)
	app.DailyBudget, app.MinInterval = 40, time.Second
	a := b.app(app)
	reserve := refresh.ScheduleReserve(decoded(t, app))
	if reserve != 20 {
		t.Fatalf("setup: reserve %d, want 20 (half of a budget of 40)", reserve)
	}
	publish(t, b, a.Name)
	api := b.refresher("api")
	var refused *refresh.RefusedError
	for i := 0; i < app.DailyBudget; i++ {
		stale, _ := b.published(a.Name)
		b.sb.Revoke(a.AppID)
		b.sb.Clock().Advance(refresh.DefaultVerifiedFor)
		_, err := api.Refresh(ctxT(t), a.Name, stale)
		if errors.As(err, &refused) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if refused == nil || refused.Reason != refresh.ReasonDailyBudget {
		t.Fatalf("claims were never refused for the budget (last refusal %v)", refused)
	}
	if st := b.state(a.Name); st.CallsToday != app.DailyBudget-reserve {
		t.Errorf("claims stopped at %d calls, want %d (budget less the schedule's reserve)", st.CallsToday, app.DailyBudget-reserve)
	}
	// The schedule can still refresh.
	b.sb.Clock().Advance(2 * time.Hour)
	if rep := mustRefreshDue(t, b.refresher("scheduler")); rep.Count(refresh.StatusRefreshed) != 1 {
		t.Errorf("scheduled run after the claims: %+v, want refreshed from the reserve", rep.Outcomes)
	}
}

// TestLostForcedTokenMakesTheAppDue was found by the model check: a forced
// stable refresh ends the published token at once; when the token it issued
// is lost (the commit throttled, or the answer lost after WeChat issued it),
// the app is due at the next run instead of serving a dead token until its
// recorded expiry.
func TestLostForcedTokenMakesTheAppDue(t *testing.T) {
	for _, lose := range []string{"commit throttled", "answer lost"} {
		t.Run(lose, func(t *testing.T) {
			b := newFakeBed(t, wechattest.Config{})
			a := b.app(appNamed("shop", registry.OfficialAccount, registry.Stable))
			first := publish(t, b, a.Name)
			b.sb.Clock().Advance(time.Minute)
			op := b.refresher("operator", func(r *refresh.Refresher) {
				r.WeChat.(*wechat.Client).HTTPClient = &http.Client{Timeout: 200 * time.Millisecond}
			})
			switch lose {
			case "commit throttled":
				b.fakes.leases.SetFault(func(o leasetest.Op, _ string) leasetest.Fault {
					if o == leasetest.OpCommit {
						return leasetest.Fault{Err: leasetest.Throttled()}
					}
					return leasetest.Fault{}
				})
			case "answer lost":
				// The sandbox issues the token, then the answer comes
				// too late for the client.
				b.sb.Inject(wechattest.Fault{Path: wechattest.PathStableToken, Latency: wechattest.Duration(time.Second), Times: 1})
			}
			if _, err := op.ForceRefresh(ctxT(t), a.Name); err == nil {
				t.Fatal("setup: the forced refresh succeeded")
			}
			b.fakes.leases.SetFault(nil)
			b.sb.ClearFaults()
			if lose == "commit throttled" && b.sb.Check(first) == 0 {
				t.Fatal("setup: the forced call did not end the published token")
			}
			b.sb.Clock().Advance(time.Minute)
			rep := mustRefreshDue(t, b.refresher("scheduler"))
			if rep.Count(refresh.StatusRefreshed) != 1 {
				t.Errorf("run after the lost forced token: %+v, want refreshed", rep.Outcomes)
			}
			if tok, _ := b.published(a.Name); b.sb.Check(tok) != 0 {
				t.Error("the published token is not valid after the run")
			}
		})
	}
}
