package refresh_test

// Regression tests for the defects of the review (reference/review.md §1,
// C1-C12 and A1), written before their fixes. Each test names its defect,
// plays the scenario on the engine harness and the sandbox, and states the
// behaviour expected once fixed. They use the public API only (Refresh,
// ForceRefresh, RefreshDue, Status, RefusedError, report statuses, the
// state as lease.Table reads it, and the sandbox's counters).

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// secretOf is the secret bed.app registers for an app.
func secretOf(name string) string { return "secret-" + name + "-0123456789abcdefghij" }

// statusOf is the status a scheduled run reported for app ("" when none).
func statusOf(rep refresh.Report, app string) refresh.RunStatus {
	for _, o := range rep.Outcomes {
		if o.App == app {
			return o.Status
		}
	}
	return ""
}

// outcomeOf describes app's outcome in rep for a failure message (status
// and error; never a token).
func outcomeOf(rep refresh.Report, app string) string {
	for _, o := range rep.Outcomes {
		if o.App == app {
			if o.Err != nil {
				return string(o.Status) + " (" + o.Err.Error() + ")"
			}
			return string(o.Status)
		}
	}
	return "no outcome"
}

// setClock moves the sandbox clock (and so every refresher's) to at.
func setClock(b *bed, at time.Time) { b.sb.Clock().Set(at) }

// dueTime is when a scheduled run finds app's committed token due: 19
// minutes before expiry for classic (inside the 20-minute margin), 4 minutes
// before for stable (inside the 270 s before WeChat's 300 s window).
func dueTime(b *bed, a registry.App) time.Time {
	b.t.Helper()
	exp := b.state(a.Name).ExpiresAt
	if exp.IsZero() {
		b.t.Fatalf("setup: %s has no committed expiry", a.Name)
	}
	if a.Mode == registry.Stable {
		return exp.Add(-4 * time.Minute)
	}
	return exp.Add(-19 * time.Minute)
}

// status is the refresher's Status of app.
func status(t *testing.T, r *refresh.Refresher, app string) refresh.Status {
	t.Helper()
	st, err := r.Status(ctxT(t), app)
	if err != nil {
		t.Fatalf("Status(%s): %v", app, err)
	}
	return st
}

// lockOut makes the app's lease held by another owner ("stuck") for a
// minute of sandbox time, as an instance frozen mid-refresh would.
func lockOut(t *testing.T, b *bed, app string) {
	t.Helper()
	now := b.sb.Now()
	if _, err := b.leases().Acquire(ctxT(t), app, "stuck", now, now.Add(time.Minute)); err != nil {
		t.Fatalf("setup: take the lease as another owner: %v", err)
	}
}

// rogueClassic fetches a classic token with app's secret behind wxtoken's
// back, then lets the 5-minute overlap pass: the published token is dead.
func rogueClassic(b *bed, a registry.App) {
	q := url.Values{"grant_type": {"client_credential"}, "appid": {a.AppID}, "secret": {secretOf(a.Name)}}
	rogueCall(b.t, http.MethodGet, b.sb.URL+"/cgi-bin/token?"+q.Encode(), "")
	b.sb.Clock().Advance(6 * time.Minute)
}

// quickRetryer is the SDK's standard retryer (3 attempts) with a 1 ms
// backoff, so that tests through a fault proxy stay fast.
func quickRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	})
}

// waitTimeout sets a refresher's WaitTimeout.
func waitTimeout(d time.Duration) func(*refresh.Refresher) {
	return func(r *refresh.Refresher) { r.WaitTimeout = d }
}

// fp is a token's fingerprint, for failure messages.
func fp(tok string) string { return wechat.Fingerprint(tok) }

// TestDefectC1aClearQuotaThenForce: a classic app hits WeChat's daily quota
// (45009) at its due time and is paused until Beijing midnight. The operator
// runs clear_quota and force-refreshes, which succeeds. Expected: the
// success ends the pause at once: Status shows no block, on-demand callers
// are served, and at the new token's due time the scheduler refreshes it
// (today the pause stays until midnight, so the token expires unrefreshed).
func TestDefectC1aClearQuotaThenForce(t *testing.T) {
	b := newBed(t, wechattest.Config{ClassicDailyQuota: 1})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	sched := b.refresher("scheduler")
	if rep := mustRefreshDue(t, sched); statusOf(rep, a.Name) != "refreshed" {
		t.Fatalf("setup: first run: %s, want refreshed", outcomeOf(rep, a.Name))
	}
	setClock(b, dueTime(b, a))
	rep := mustRefreshDue(t, sched)
	if st := b.state(a.Name); st.LastErrCode != 45009 || !st.BlockedUntil.After(b.sb.Now()) {
		t.Fatalf("setup: run at the due time: %s; state errcode %d blocked until %v, want 45009 and paused",
			outcomeOf(rep, a.Name), st.LastErrCode, st.BlockedUntil)
	}

	if err := b.sb.ClearQuota(a.AppID); err != nil {
		t.Fatalf("setup: clear_quota: %v", err)
	}
	forced, err := b.refresher("operator").ForceRefresh(ctxT(t), a.Name)
	if err != nil {
		t.Fatalf("setup: ForceRefresh after clear_quota: %v", err)
	}
	b.saw(forced.Token)

	if st := status(t, sched, a.Name); !st.BlockedUntil.IsZero() {
		t.Errorf("after a successful forced refresh, Status.BlockedUntil = %v (errcode %d), want no block",
			st.BlockedUntil, st.LastErrCode)
	}
	if res, err := b.refresher("api").Refresh(ctxT(t), a.Name, ""); err != nil {
		t.Errorf("on-demand Refresh after the forced refresh: %v, want the token", err)
	} else if res.Token != forced.Token {
		t.Errorf("on-demand Refresh served fp %s, want the forced token fp %s", fp(res.Token), fp(forced.Token))
	}

	// The sandbox's quota of 1 was spent again by the forced call (WeChat's
	// real quota is 2000): clear it once more, so that only wxtoken's own
	// pause can stand in the way of the next scheduled refresh.
	if err := b.sb.ClearQuota(a.AppID); err != nil {
		t.Fatalf("setup: second clear_quota: %v", err)
	}
	setClock(b, dueTime(b, a))
	rep = mustRefreshDue(t, sched)
	if got := statusOf(rep, a.Name); got != "refreshed" {
		t.Errorf("at the forced token's due time the scheduled run reports %s, want refreshed "+
			"(the pause should have ended with the successful forced refresh)", outcomeOf(rep, a.Name))
	}
}

// TestDefectC1bWhitelistFixed: calls are paused after 40164 (the caller's IP
// is not whitelisted). The whitelist is fixed and the operator's forced
// refresh succeeds. Expected: the same minute, the scheduled run reports the
// app not_due (not blocked with "errcode 0") and Status shows no block.
func TestDefectC1bWhitelistFixed(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	locked := wechattest.App{AppID: a.AppID, Secret: secretOf(a.Name), Kind: wechattest.OfficialAccount}
	locked.AllowedIPs = []string{"203.0.113.9"}
	b.sb.AddApp(locked)
	sched := b.refresher("scheduler")
	rep := mustRefreshDue(t, sched)
	if st := b.state(a.Name); st.LastErrCode != 40164 || !st.BlockedUntil.After(b.sb.Now()) {
		t.Fatalf("setup: run with the IP not whitelisted: %s; errcode %d blocked until %v, want 40164 and paused",
			outcomeOf(rep, a.Name), st.LastErrCode, st.BlockedUntil)
	}

	locked.AllowedIPs = nil // the whitelist is fixed
	b.sb.AddApp(locked)
	forced, err := b.refresher("operator").ForceRefresh(ctxT(t), a.Name)
	if err != nil {
		t.Fatalf("setup: ForceRefresh after the whitelist was fixed: %v", err)
	}
	b.saw(forced.Token)

	rep = mustRefreshDue(t, sched)
	if got := statusOf(rep, a.Name); got != "not_due" {
		t.Errorf("run right after the successful forced refresh reports %s, want not_due", outcomeOf(rep, a.Name))
	}
	if st := status(t, sched, a.Name); !st.BlockedUntil.IsZero() {
		t.Errorf("Status.BlockedUntil = %v after a successful refresh, want no block", st.BlockedUntil)
	}
}

// TestDefectC1cForceLimitDoesNotStopNormalMode: a stable app's forced
// refresh is answered 45009 (WeChat's daily force_refresh limit; normal mode
// is unaffected). Expected: normal-mode refreshes go on: in the stable
// window the scheduled run refreshes (today the 45009 pauses everything
// until Beijing midnight, and the token expires).
func TestDefectC1cForceLimitDoesNotStopNormalMode(t *testing.T) {
	b := newBed(t, wechattest.Config{ForceRefreshDailyLimit: 1})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Stable))
	sched := b.refresher("scheduler")
	if rep := mustRefreshDue(t, sched); statusOf(rep, a.Name) != "refreshed" {
		t.Fatalf("setup: first run: %s, want refreshed", outcomeOf(rep, a.Name))
	}
	op := b.refresher("operator")
	forced, err := op.ForceRefresh(ctxT(t), a.Name)
	if err != nil {
		t.Fatalf("setup: first ForceRefresh: %v", err)
	}
	b.saw(forced.Token)
	b.sb.Clock().Advance(61 * time.Second) // past the minimum interval and WeChat's 30 s
	_, err = op.ForceRefresh(ctxT(t), a.Name)
	var we *wechat.Error
	if !errors.As(err, &we) || we.Code != 45009 {
		t.Fatalf("setup: second ForceRefresh of the day (limit 1): %v, want WeChat's 45009", err)
	}

	setClock(b, dueTime(b, a))
	rep := mustRefreshDue(t, sched)
	if got := statusOf(rep, a.Name); got != "refreshed" {
		t.Errorf("in the stable window after a forced call's 45009 the run reports %s, want refreshed "+
			"(the force_refresh limit does not stop normal mode)", outcomeOf(rep, a.Name))
	}
	if tok, _ := b.published(a.Name); tok == forced.Token || b.sb.Check(tok) != 0 {
		t.Errorf("published token fp %s (forced fp %s, WeChat errcode %d), want a new valid token",
			fp(tok), fp(forced.Token), b.sb.Check(tok))
	}
}

// TestDefectC1dSecretFixed: the secret in SSM is wrong, so the refresh fails
// with a configuration error and calls pause. The operator writes the right
// secret (a new SSM version). Expected: the next run uses it and refreshes
// (today the pause lasts its 30 minutes whatever the secret).
func TestDefectC1dSecretFixed(t *testing.T) {
	for _, mode := range []registry.Mode{registry.Classic, registry.Stable} {
		t.Run(string(mode), func(t *testing.T) {
			b := newBed(t, wechattest.Config{})
			a := b.app(appNamed("shop", registry.OfficialAccount, mode))
			b.putSecret(a.Name, "wrong-secret-0123456789abcdefghijkl")
			sched := b.refresher("scheduler")
			rep := mustRefreshDue(t, sched)
			if st := b.state(a.Name); statusOf(rep, a.Name) != "failed" || (st.LastErrCode != 40001 && st.LastErrCode != 40125) {
				t.Fatalf("setup: run with a wrong secret: %s, errcode %d; want failed with 40001/40125", outcomeOf(rep, a.Name), st.LastErrCode)
			}
			b.sb.Clock().Advance(time.Minute)
			if rep := mustRefreshDue(t, sched); statusOf(rep, a.Name) != "blocked" {
				t.Fatalf("setup: next run: %s, want blocked", outcomeOf(rep, a.Name))
			}

			b.putSecret(a.Name, secretOf(a.Name)) // the operator fixes the secret
			b.sb.Clock().Advance(time.Minute)
			rep = mustRefreshDue(t, sched)
			if got := statusOf(rep, a.Name); got != "refreshed" {
				t.Errorf("run after the secret was fixed reports %s, want refreshed (a new secret ends a configuration pause)", outcomeOf(rep, a.Name))
			}
		})
	}
}

// TestDefectC2aCheckFailsClosed: a caller claims the published (valid) token
// is invalid while WeChat's check call (get_api_domain_ip) errors. Expected:
// no new token is issued and the published token is kept; Refresh returns an
// error (today it "could not check" and refreshes, rotating everyone's token).
func TestDefectC2aCheckFailsClosed(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	tok := publish(t, b, a.Name)
	b.sb.Inject(wechattest.Fault{Path: wechattest.PathDomainIP, ErrCode: -1}) // until ClearFaults
	n := b.sb.TokensIssued(a.AppID)

	res, err := b.refresher("api").Refresh(ctxT(t), a.Name, tok)
	b.saw(res.Token)
	if err == nil {
		t.Errorf("claim while the check errors: got fp %s (refreshed %v) and no error, want an error (the check could not tell)",
			fp(res.Token), res.Refreshed)
	}
	if got := b.sb.TokensIssued(a.AppID) - n; got != 0 {
		t.Errorf("%d tokens issued for an unverifiable claim, want 0 (fail closed)", got)
	}
	if pub, _ := b.published(a.Name); pub != tok || b.sb.Check(tok) != 0 {
		t.Errorf("published fp %s, WeChat errcode for the original %d; want the original token kept and valid", fp(pub), b.sb.Check(tok))
	}
}

// TestDefectC2bVerificationHonoured: a claim WeChat rejects (the published
// token is fine) is recorded; an identical claim right after, from the same
// instance or another, is answered from that record without asking WeChat
// again (today every claim costs a get_api_domain_ip call).
func TestDefectC2bVerificationHonoured(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	tok := publish(t, b, a.Name)
	api := b.refresher("api-1")
	res, err := api.Refresh(ctxT(t), a.Name, tok)
	if err != nil || res.Token != tok || res.Refreshed {
		t.Fatalf("setup: false claim: %v, error %v; want the same token, not refreshed", res, err)
	}
	checks := b.sb.Calls(wechattest.PathDomainIP, a.AppID)
	if checks != 1 {
		t.Fatalf("setup: %d checks for the first claim, want 1", checks)
	}

	for _, r := range []*refresh.Refresher{api, b.refresher("api-2")} {
		res, err := r.Refresh(ctxT(t), a.Name, tok)
		if err != nil || res.Token != tok || res.Refreshed {
			t.Errorf("%s: repeated false claim: %v, error %v; want the same token, not refreshed", r.Owner, res, err)
		}
		if got := b.sb.Calls(wechattest.PathDomainIP, a.AppID) - checks; got != 0 {
			t.Errorf("%s: the repeated claim was checked with WeChat again (%d calls) although it was verified just now", r.Owner, got)
		}
		checks = b.sb.Calls(wechattest.PathDomainIP, a.AppID)
	}
}

// TestDefectC5AppIDChange: app "shop" is registered to account A and has A's
// token published; it is then registered to account B (new appid and
// secret). Expected: the next ensure call, and the next scheduled run, treat
// the account change like a mode change and serve B's token (today A's token
// is served as shop's until it would be due).
func TestDefectC5AppIDChange(t *testing.T) {
	for _, mode := range []registry.Mode{registry.Stable, registry.Classic} {
		for _, via := range []string{"ensure", "scheduled"} {
			t.Run(string(mode)+"/"+via, func(t *testing.T) {
				b := newBed(t, wechattest.Config{})
				a := b.app(appNamed("shop", registry.OfficialAccount, mode))
				old := publish(t, b, a.Name)
				other := appNamed("shop-b", registry.OfficialAccount, mode) // account B
				secretB := secretOf(other.Name)
				b.sb.AddApp(wechattest.App{AppID: other.AppID, Secret: secretB, Kind: wechattest.OfficialAccount})
				moved := a
				moved.AppID = other.AppID
				b.putItem(moved)
				b.putSecret(a.Name, secretB)
				api := apiOf(mode)

				var got string
				switch via {
				case "ensure":
					res, err := b.refresher("api").Refresh(ctxT(t), a.Name, "")
					if err != nil {
						t.Fatalf("Refresh after the account change: %v", err)
					}
					got = res.Token
				case "scheduled":
					rep := mustRefreshDue(t, b.refresher("scheduler"))
					if s := statusOf(rep, a.Name); s != "refreshed" {
						t.Errorf("scheduled run after the account change reports %s, want refreshed", outcomeOf(rep, a.Name))
					}
					got, _ = b.published(a.Name)
				}
				b.saw(got)
				want, _ := b.sb.Current(other.AppID, api)
				switch {
				case want == "":
					t.Errorf("after shop moved to account B, shop's token is fp %s (account A's was fp %s) and WeChat never issued B a token; want B's token",
						fp(got), fp(old))
				case got != want:
					t.Errorf("after shop moved to account B, shop's token is fp %s (account A's was fp %s); want B's current token fp %s",
						fp(got), fp(old), fp(want))
				}
			})
		}
	}
}

// TestDefectC6RefusalBeforeQueueing: while another owner holds the lease, a
// claim that would be refused anyway (calls paused, or the minimum interval)
// is refused at once with the current token, without queueing for the
// lease (today it waits and gets ErrLockTimeout, a 503).
func TestDefectC6RefusalBeforeQueueing(t *testing.T) {
	t.Run("blocked", func(t *testing.T) {
		b := newBed(t, wechattest.Config{})
		a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
		tok := publish(t, b, a.Name)
		b.sb.AddApp(wechattest.App{AppID: a.AppID, Secret: secretOf(a.Name), Kind: wechattest.OfficialAccount, AllowedIPs: []string{"203.0.113.9"}})
		setClock(b, dueTime(b, a))
		rep := mustRefreshDue(t, b.refresher("scheduler"))
		if st := b.state(a.Name); st.LastErrCode != 40164 || !st.BlockedUntil.After(b.sb.Now()) {
			t.Fatalf("setup: %s; errcode %d, blocked until %v; want paused after 40164", outcomeOf(rep, a.Name), st.LastErrCode, st.BlockedUntil)
		}
		// A minute later (still paused), another instance is stuck holding
		// the lease. (On the frozen clock, a claim in the very instant of
		// the failure would take that failure for the holder's.)
		b.sb.Clock().Advance(time.Minute)
		lockOut(t, b, a.Name)

		_, err := b.refresher("api", waitTimeout(300*time.Millisecond)).Refresh(ctxT(t), a.Name, tok)
		var refused *refresh.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("claim while paused and the lease is held: %v, want *RefusedError (blocked) with the current token", err)
		}
		if refused.Reason != refresh.ReasonBlocked || refused.Current.Token != tok {
			t.Errorf("refusal %v carries fp %s; want reason blocked and the published token fp %s", refused, fp(refused.Current.Token), fp(tok))
		}
	})
	t.Run("minimum interval", func(t *testing.T) {
		b := newBed(t, wechattest.Config{})
		a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
		stale := publish(t, b, a.Name)
		rogueClassic(b, a)
		first, err := b.refresher("api-1").Refresh(ctxT(t), a.Name, stale)
		if err != nil || first.Token == stale || b.sb.Check(first.Token) != 0 {
			t.Fatalf("setup: true claim: %v, error %v; want a new valid token", first, err)
		}
		b.saw(first.Token)
		lockOut(t, b, a.Name)

		_, err = b.refresher("api-2", waitTimeout(300*time.Millisecond)).Refresh(ctxT(t), a.Name, first.Token)
		var refused *refresh.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("claim within the minimum interval while the lease is held: %v, want *RefusedError (min_interval)", err)
		}
		if refused.Reason != refresh.ReasonMinInterval || refused.Current.Token != first.Token {
			t.Errorf("refusal %v carries fp %s; want reason min_interval and the published token fp %s", refused, fp(refused.Current.Token), fp(first.Token))
		}
	})
}

// TestDefectA1WaitersWaitForTheHolder: a caller whose context allows 10 s
// waits for another instance's refresh that takes 1.5 s at WeChat, and gets
// its token, even though WaitTimeout (here 300 ms) is shorter (today it gives
// up at WaitTimeout with ErrLockTimeout, a 503 refresh_in_progress).
func TestDefectA1WaitersWaitForTheHolder(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	b.sb.Inject(wechattest.Fault{Path: wechattest.PathToken, Latency: wechattest.Duration(1500 * time.Millisecond), Times: 1})

	type answer struct {
		res refresh.Result
		err error
	}
	first := make(chan answer, 1)
	go func() {
		res, err := b.refresher("r1").Refresh(ctxT(t), a.Name, "")
		first <- answer{res, err}
	}()
	// Wait (bounded) until r1 holds the lease.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasPrefix(b.state(a.Name).LeaseOwner, "r1#") {
		if time.Now().After(deadline) {
			t.Fatal("setup: r1 did not take the lease within 5 s")
		}
		select {
		case ans := <-first:
			t.Fatalf("setup: r1 finished (error %v) before it was seen holding the lease", ans.err)
		case <-time.After(10 * time.Millisecond):
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res2, err2 := b.refresher("r2", waitTimeout(300*time.Millisecond)).Refresh(ctx, a.Name, "")
	ans1 := <-first
	b.saw(ans1.res.Token, res2.Token)
	if ans1.err != nil {
		t.Fatalf("setup: r1: %v", ans1.err)
	}
	if err2 != nil {
		t.Fatalf("waiter with 10 s left in its context: %v, want r1's token", err2)
	}
	if res2.Token != ans1.res.Token {
		t.Errorf("waiter got fp %s, want r1's token fp %s", fp(res2.Token), fp(ans1.res.Token))
	}
}

// TestDefectC7FailedAttemptDoesNotStartInterval: the published token is dead
// (rotated behind wxtoken's back); the first on-demand refresh fails at
// WeChat (-1 on every attempt). Expected: a claim right after the fault clears
// refreshes (today it is refused for the minimum interval, leaving callers
// with a token WeChat rejects).
func TestDefectC7FailedAttemptDoesNotStartInterval(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	stale := publish(t, b, a.Name)
	rogueClassic(b, a)
	if b.sb.Check(stale) == 0 {
		t.Fatal("setup: the published token is still valid")
	}
	api := b.refresher("api")
	b.sb.Inject(wechattest.Fault{Path: wechattest.PathToken, ErrCode: -1}) // until ClearFaults
	if _, err := api.Refresh(ctxT(t), a.Name, stale); err == nil {
		t.Fatal("setup: the claim succeeded through -1 on every attempt")
	}
	b.sb.ClearFaults()

	res, err := api.Refresh(ctxT(t), a.Name, stale)
	b.saw(res.Token)
	if err != nil {
		t.Fatalf("claim right after a failed attempt: %v, want a new token (a failed attempt does not start the minimum interval)", err)
	}
	if res.Token == stale || b.sb.Check(res.Token) != 0 {
		t.Errorf("claim got fp %s (WeChat errcode %d), want a new valid token", fp(res.Token), b.sb.Check(res.Token))
	}
}

// TestDefectC11UnchangedAnswerPersists: a stable app's state item is lost
// (a new table over an existing parameter prefix) while SSM holds the
// current token. The next run asks WeChat, which answers with the same
// token. Expected: that answer is recorded, so the run after reports not_due
// without calling WeChat (today every run calls stable_token until WeChat
// rotates, up to 2 h).
func TestDefectC11UnchangedAnswerPersists(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Stable))
	tok := publish(t, b, a.Name)
	b.deleteState(a.Name)
	sched := b.refresher("scheduler")
	b.sb.Clock().Advance(time.Minute)
	before := b.sb.Calls(wechattest.PathStableToken, a.AppID)
	rep := mustRefreshDue(t, sched)
	if got := b.sb.Calls(wechattest.PathStableToken, a.AppID) - before; got != 1 {
		t.Fatalf("setup: run without state: %s, %d stable_token calls; want 1", outcomeOf(rep, a.Name), got)
	}
	if pub, _ := b.published(a.Name); pub != tok {
		t.Fatalf("setup: WeChat's unchanged answer changed the published token")
	}

	b.sb.Clock().Advance(time.Minute)
	before = b.sb.Calls(wechattest.PathStableToken, a.AppID)
	rep = mustRefreshDue(t, sched)
	calls := b.sb.Calls(wechattest.PathStableToken, a.AppID) - before
	if got := statusOf(rep, a.Name); got != "not_due" || calls != 0 {
		t.Errorf("run after WeChat answered the published token: %s with %d stable_token calls; want not_due and 0",
			outcomeOf(rep, a.Name), calls)
	}
}

// TestDefectC4PublishFailureKeepsToken: at a classic app's due time the
// fetch issues T2 but writing it to SSM fails (and keeps failing). T1, still
// in SSM, dies 5 minutes later at WeChat. Expected: a caller claiming T1
// invalid gets T2 (valid) without a new token being issued; once SSM
// recovers, the next run publishes T2 (today T2 is dropped and every
// attempt fetches another token, superseding the last).
func TestDefectC4PublishFailureKeepsToken(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	b.needEngines()
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	ssmp := awstest.NewProxy(t, os.Getenv(awstest.EndpointEnv(awstest.SSM)))
	via := func(owner string) *refresh.Refresher {
		return b.refresherVia(owner, b.sb.URL, nil, func(o *ssm.Options) {
			o.BaseEndpoint, o.Retryer = aws.String(ssmp.URL), quickRetryer()
		})
	}
	sched := via("scheduler")
	if rep := mustRefreshDue(t, sched); statusOf(rep, a.Name) != "refreshed" {
		t.Fatalf("setup: first run: %s, want refreshed", outcomeOf(rep, a.Name))
	}
	t1, _ := b.published(a.Name)

	setClock(b, dueTime(b, a))
	ssmp.Inject(awstest.Fault{Op: opPutParameter, Kind: awstest.ServerError}) // until Clear
	rep := mustRefreshDue(t, sched)
	t2, _ := b.sb.Current(a.AppID, wechattest.Classic)
	b.saw(t2)
	if t2 == t1 || ssmp.Injected(opPutParameter) == 0 {
		t.Fatalf("setup: run at the due time: %s; a new token issued: %v, failed puts: %d; want a fetch whose publish failed",
			outcomeOf(rep, a.Name), t2 != t1, ssmp.Injected(opPutParameter))
	}
	n := b.sb.TokensIssued(a.AppID)

	b.sb.Clock().Advance(6 * time.Minute)
	if b.sb.Check(t1) == 0 {
		t.Fatal("setup: T1 is still valid 6 minutes after T2 was issued")
	}
	res, err := via("api").Refresh(ctxT(t), a.Name, t1)
	b.saw(res.Token)
	switch {
	case err != nil:
		t.Errorf("claim that T1 is invalid while SSM still fails: %v; want T2 (fp %s), fetched but unpublished", err, fp(t2))
	case b.sb.Check(res.Token) != 0:
		t.Errorf("claim got fp %s, which WeChat rejects (errcode %d); want T2 (fp %s)", fp(res.Token), b.sb.Check(res.Token), fp(t2))
	}
	if got := b.sb.TokensIssued(a.AppID) - n; got != 0 {
		t.Errorf("%d more tokens issued for the claim, want 0: T2 is valid and must be handed out", got)
	}

	ssmp.Clear()
	b.sb.Clock().Advance(time.Minute)
	rep = mustRefreshDue(t, sched)
	if pub, _ := b.published(a.Name); pub != t2 {
		t.Errorf("after SSM recovered the run reports %s and SSM holds fp %s; want T2 (fp %s) published", outcomeOf(rep, a.Name), fp(pub), fp(t2))
	}
	if got := b.sb.TokensIssued(a.AppID) - n; got != 0 {
		t.Errorf("%d more tokens issued in all, want 0", got)
	}
}

// TestDefectC8CommitFailureKeepsNoStaleErrcode: a refresh fails at WeChat
// (-1); the next one succeeds at WeChat but its commit is throttled by
// DynamoDB (not fenced). Expected: the recorded failure is the commit's, with
// no WeChat errcode (today the -1 of the earlier failure stays, so waiters
// and the status route report "WeChat answered -1"), and the event is not
// "fenced".
func TestDefectC8CommitFailureKeepsNoStaleErrcode(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	b.needEngines()
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	ddbp := awstest.NewProxy(t, os.Getenv(awstest.EndpointEnv(awstest.DynamoDB)))
	events := &eventLog{}
	sched := b.refresherVia("scheduler", b.sb.URL, func(o *dynamodb.Options) {
		o.BaseEndpoint, o.Retryer = aws.String(ddbp.URL), quickRetryer()
	}, nil, events.observe)
	if rep := mustRefreshDue(t, sched); statusOf(rep, a.Name) != "refreshed" {
		t.Fatalf("setup: first run: %s, want refreshed", outcomeOf(rep, a.Name))
	}
	setClock(b, dueTime(b, a))
	b.sb.Inject(wechattest.Fault{Path: wechattest.PathToken, ErrCode: -1}) // until ClearFaults
	rep := mustRefreshDue(t, sched)
	if st := b.state(a.Name); st.LastErrCode != -1 {
		t.Fatalf("setup: run with -1: %s, errcode %d; want -1 recorded", outcomeOf(rep, a.Name), st.LastErrCode)
	}
	b.sb.ClearFaults()
	b.sb.Clock().Advance(time.Minute)

	// The run's UpdateItems are Acquire, Commit, (Confirm,) Release: skip
	// the Acquire and throttle every SDK attempt of the Commit.
	ddbp.Inject(awstest.Fault{Op: opUpdateItem, Kind: awstest.Throttle, Skip: 1, Times: 3})
	n := len(events.outcomes())
	rep = mustRefreshDue(t, sched)
	if ddbp.Injected(opUpdateItem) != 3 || statusOf(rep, a.Name) == "refreshed" {
		t.Fatalf("setup: run with the commit throttled: %s, %d throttled UpdateItems; want the commit to fail",
			outcomeOf(rep, a.Name), ddbp.Injected(opUpdateItem))
	}
	if st := status(t, sched, a.Name); st.LastErrCode != 0 {
		t.Errorf("after a commit failure Status reports WeChat errcode %d (%q); want 0: WeChat answered, DynamoDB failed",
			st.LastErrCode, st.LastError)
	}
	for _, o := range events.outcomes()[n:] {
		if o == refresh.OutcomeFenced {
			t.Errorf("a throttled (not fenced) commit was reported as %q", o)
		}
	}
}

// TestDefectC10FencingPerAcquisition: one process (one Owner) serves
// concurrent requests. Holder A's WeChat answer comes after its lease ran
// out, and meanwhile another acquisition by the same owner took the lease.
// Expected: A's commit is fenced (ErrFenced), A publishes nothing, and A
// does not drop the other acquisition's lease (today the owner matches, so
// A commits over the live lease and releases it).
func TestDefectC10FencingPerAcquisition(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	var late string
	var until time.Time
	var takeErr error
	stalled := b.refresher("instance-1", func(r *refresh.Refresher) {
		r.WeChat = &hookedWeChat{WeChat: r.WeChat, fetch: func(ctx context.Context, call fetchFunc) (wechat.Token, error) {
			tok, err := call(context.WithoutCancel(ctx))
			late = tok.AccessToken
			// The answer arrives after the lease ended, and another request
			// of the same process has taken the lease since.
			b.sb.Clock().Advance(refresh.DefaultLeaseDuration + time.Second)
			now := b.sb.Now()
			until = now.Add(refresh.DefaultLeaseDuration)
			_, takeErr = b.leases().Acquire(context.WithoutCancel(ctx), a.Name, "instance-1", now, until)
			return tok, err
		}}
	})
	_, err := stalled.Refresh(ctxT(t), a.Name, "")
	b.saw(late)
	if late == "" || takeErr != nil {
		t.Fatalf("setup: WeChat token fetched: %v; second acquisition: %v", late != "", takeErr)
	}
	if !errors.Is(err, lease.ErrFenced) {
		t.Errorf("late holder: %v, want lease.ErrFenced: another acquisition holds the lease", err)
	}
	st := b.state(a.Name)
	if st.Generation != 0 {
		t.Errorf("generation %d after the late holder's answer, want 0 (nothing committed)", st.Generation)
	}
	if !st.Leased(b.sb.Now()) || !st.LeaseUntil.Equal(until) {
		t.Errorf("the other acquisition's lease (until %v) is gone: lease owner %q until %v", until, st.LeaseOwner, st.LeaseUntil)
	}
}
