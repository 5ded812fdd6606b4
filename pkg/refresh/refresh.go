// Package refresh is wxtoken's refresher: it decides when an app's WeChat
// token must be replaced, makes sure only one fetcher calls WeChat for an app
// at a time across every Lambda instance (a lease in DynamoDB), publishes the
// new token to SSM, and lets concurrent callers share one refresh.
//
// The two entry points are RefreshDue, for the schedule, and Refresh, for a
// business server that was told by WeChat that its token is bad. ForceRefresh
// is the operator's escape hatch. See design.md §4 for the properties each
// piece implements; the comments below name them (P1..P10).
//
// Errors: ErrUnknownApp for an app not registered; *RefusedError when a
// budget, an interval or a block refuses a WeChat call (it carries the
// current token); *FailedError when a refresh in which a caller took part
// failed at WeChat; ErrLockTimeout when another refresh did not finish in
// time; wrapped *wechat.Error and SDK errors otherwise. No error, log line or
// String form here contains a token or a secret.
package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// Apps is what the refresher needs of the registry.
type Apps interface {
	Get(ctx context.Context, name string) (registry.App, error)
	List(ctx context.Context) ([]registry.App, []error, error)
}

// Store is what the refresher needs of the token store.
type Store interface {
	Get(ctx context.Context, app string) (string, int64, error)
	GetVersion(ctx context.Context, app string, version int64) (string, error)
	Version(ctx context.Context, app string) (int64, error)
	Put(ctx context.Context, app, token string) (int64, error)
	Secret(ctx context.Context, app string) (string, int64, error)
	SecretVersion(ctx context.Context, app string) (int64, error)
}

// Leases is what the refresher needs of the lease table.
type Leases interface {
	Get(ctx context.Context, app string) (lease.State, error)
	Acquire(ctx context.Context, app, owner string, now, until time.Time) (lease.State, error)
	Commit(ctx context.Context, app, owner string, fromGen int64, now time.Time, c lease.Commit) error
	Confirm(ctx context.Context, app string, gen, version int64, now time.Time) error
	Release(ctx context.Context, app, owner string, now time.Time, f lease.Fields) error
	List(ctx context.Context) ([]lease.State, error)
	Expire(ctx context.Context, app string, now, at time.Time) error
}

// WeChat is what the refresher needs of the WeChat client.
type WeChat interface {
	Token(ctx context.Context, appID, secret string) (wechat.Token, error)
	StableToken(ctx context.Context, appID, secret string, forceRefresh bool) (wechat.Token, error)
	WeComToken(ctx context.Context, corpID, corpSecret string) (wechat.Token, error)
	CheckToken(ctx context.Context, accessToken string) error
	CheckWeComToken(ctx context.Context, accessToken string) error
}

// Defaults for the Refresher's zero fields.
const (
	DefaultLeaseDuration = 60 * time.Second
	DefaultLeaseMargin   = 5 * time.Second
	DefaultWaitTimeout   = 10 * time.Second
	DefaultPollInterval  = 100 * time.Millisecond
	DefaultStableWindow  = 300 * time.Second
	DefaultStableSlack   = 30 * time.Second
	DefaultConcurrency   = 8
	DefaultConfigBlock   = 30 * time.Minute
	DefaultVerifiedFor   = 60 * time.Second
	DefaultCheckEvery    = 10 * time.Minute
	// MinRunTime is the least time a scheduled run must have left to start
	// an app's refresh; with less, the app is deferred to the next run.
	MinRunTime = 10 * time.Second
	// DefaultCleanupAfter is how long the state of a removed app is kept
	// (for its history) before DynamoDB's TTL deletes it.
	DefaultCleanupAfter = 7 * 24 * time.Hour
)

// Errors callers branch on.
var (
	ErrUnknownApp  = errors.New("refresh: unknown app")
	ErrLockTimeout = errors.New("refresh: timed out waiting for the refresh in progress")
)

// Refusal reasons of RefusedError.
const (
	ReasonDailyBudget = "daily_budget" // the app's daily budget of WeChat calls is used up
	ReasonMinInterval = "min_interval" // an on-demand refresh happened too recently
	ReasonBlocked     = "blocked"      // WeChat refused recently (quota or configuration); calls are paused
)

// RefusedError is a refresh the refresher declined to make. Current is the
// published token, which callers should keep using.
type RefusedError struct {
	App        string
	Reason     string
	RetryAfter time.Duration
	// ErrCode is WeChat's errcode behind a ReasonBlocked refusal, and Class
	// its wechat.Class name.
	ErrCode int
	Class   string
	Current Result
}

// Error implements error.
func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("refresh: %s: refused (%s), retry after %s", e.App, e.Reason, e.RetryAfter.Round(time.Second))
	if e.ErrCode != 0 {
		msg += fmt.Sprintf(" (WeChat errcode %d)", e.ErrCode)
	}
	return msg
}

// FailedError is a refresh, made by another caller or instance, that this
// caller waited for and that failed; it repeats what was recorded.
type FailedError struct {
	App     string
	ErrCode int
	Class   string
	Message string
}

// Error implements error.
func (e *FailedError) Error() string {
	return fmt.Sprintf("refresh: %s: the refresh in progress failed: %s", e.App, e.Message)
}

// Result is a token handed to a caller.
type Result struct {
	App       string
	Token     string
	Version   int64
	ExpiresAt time.Time // zero when unknown
	// Refreshed reports that the token is newer than the one the caller
	// presented (or that a WeChat call was made for it).
	Refreshed bool
}

// String implements fmt.Stringer without the token.
func (r Result) String() string {
	return fmt.Sprintf("Result{app=%s fp=%s version=%d refreshed=%v}", r.App, wechat.Fingerprint(r.Token), r.Version, r.Refreshed)
}

// GoString implements fmt.GoStringer without the token.
func (r Result) GoString() string { return "refresh." + r.String() }

// LogValue implements slog.LogValuer without the token.
func (r Result) LogValue() slog.Value {
	return slog.GroupValue(slog.String("app", r.App), slog.String("fingerprint", wechat.Fingerprint(r.Token)),
		slog.Int64("version", r.Version), slog.Bool("refreshed", r.Refreshed))
}

// Refresher refreshes tokens. Set the four dependencies and Owner; zero
// tunables take the defaults above. A Refresher is safe for concurrent use.
type Refresher struct {
	Apps   Apps
	Store  Store
	Leases Leases
	WeChat WeChat
	// Owner identifies this instance in leases (a Lambda instance id).
	Owner string
	// Now is the clock for leases, due times and budgets; nil is time.Now.
	Now func() time.Time
	// Logger receives structured events; nil discards them.
	Logger *slog.Logger
	// Observe, when set, is told of every outcome (for metrics). It is
	// called synchronously and must be quick and safe for concurrent use.
	Observe func(context.Context, Event)

	// LeaseDuration is how long a lease lasts; it must exceed the function
	// timeout. LeaseMargin: the holder's work ends this long before it.
	LeaseDuration, LeaseMargin time.Duration
	// WaitTimeout bounds how long a caller waits for another's refresh;
	// PollInterval is how often it looks at first (then less often, up to
	// ten times as long).
	WaitTimeout, PollInterval time.Duration
	// StableWindow is WeChat's final window in which stable_token rotates;
	// StableSlack how far inside it a stable refresh is due (so that a
	// conservative expiry never asks a moment too early).
	StableWindow, StableSlack time.Duration
	// Concurrency bounds the apps refreshed at once by RefreshDue.
	Concurrency int
	// ConfigBlock pauses automatic calls after a configuration error.
	ConfigBlock time.Duration
	// VerifiedFor: after WeChat accepted a token claimed invalid, further
	// claims against it within this time are answered without a check.
	VerifiedFor time.Duration
	// CheckEvery is how often RefreshDue compares each app's SSM Version
	// with the table (spread over the runs by app), to find and repair a
	// parameter written out of order. Checking every app on every run
	// would spend SSM's shared GetParameter throughput.
	CheckEvery time.Duration
}

// kind is why a refresh runs.
type kind int

const (
	scheduled kind = iota // the schedule: only when due
	onDemand              // a caller claims stale is invalid
	ensure                // a caller wants a token, refreshed only if missing or expired
	force                 // the operator forces a new token
)

func (k kind) String() string {
	return [...]string{"scheduled", "on_demand", "ensure", "force"}[k]
}

type request struct {
	kind  kind
	stale string // the token the caller claims is invalid (onDemand)
}

// Refresh handles a caller that wants a token for app. With stale set, the
// caller claims stale is invalid: if the published token is another one, it
// is returned without calling WeChat (P2); otherwise the claim is checked
// with WeChat (P8) and, if WeChat agrees, the token is refreshed once for
// every concurrent caller (P1, P2). With stale empty, the published token is
// returned, refreshed only when missing or expired.
func (r *Refresher) Refresh(ctx context.Context, app, stale string) (Result, error) {
	a, err := r.app(ctx, app)
	if err != nil {
		return Result{}, err
	}
	q := request{kind: ensure, stale: stale}
	if stale != "" {
		q.kind = onDemand
	}
	// Fast path: no lease, no WeChat.
	st, err := r.Leases.Get(ctx, a.Name)
	if err != nil {
		return Result{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}
	cur, err := r.current(ctx, a.Name, st)
	if err != nil {
		return Result{}, err
	}
	if cur.Token != "" {
		if q.kind == onDemand && cur.Token != stale {
			cur.Refreshed = true
			r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeServed})
			return cur, nil
		}
		if q.kind == ensure && !cur.ExpiresAt.IsZero() && r.now().Before(cur.ExpiresAt) {
			r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeServed})
			return cur, nil
		}
	}
	return r.run(ctx, a, q)
}

// ForceRefresh obtains a new token for app whatever the published one, with
// stable_token's force_refresh in stable mode (WeChat allows 20 a day, 30 s
// apart). It bypasses a block after a WeChat error but not the budget or the
// minimum interval.
func (r *Refresher) ForceRefresh(ctx context.Context, app string) (Result, error) {
	a, err := r.app(ctx, app)
	if err != nil {
		return Result{}, err
	}
	return r.run(ctx, a, request{kind: force})
}

func (r *Refresher) app(ctx context.Context, name string) (registry.App, error) {
	a, err := r.Apps.Get(ctx, name)
	if errors.Is(err, registry.ErrNotFound) {
		return registry.App{}, fmt.Errorf("%w: %s", ErrUnknownApp, name)
	}
	if err != nil {
		return registry.App{}, fmt.Errorf("refresh: %s: %w", name, err)
	}
	if a.Disabled {
		return registry.App{}, fmt.Errorf("%w: %s is disabled", ErrUnknownApp, name)
	}
	return a, nil
}

// current reads the published token; ExpiresAt is known when the table
// agrees that this is the committed token.
func (r *Refresher) current(ctx context.Context, app string, st lease.State) (Result, error) {
	tok, ver, err := r.Store.Get(ctx, app)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return Result{App: app}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("refresh: %s: %w", app, err)
	}
	res := Result{App: app, Token: tok, Version: ver}
	if st.HasToken() && wechat.Fingerprint(tok) == st.Fingerprint {
		res.ExpiresAt = st.ExpiresAt
	}
	return res, nil
}

// run takes the lease (or waits for its holder) and refreshes.
func (r *Refresher) run(ctx context.Context, a registry.App, q request) (Result, error) {
	waitCtx, cancel := context.WithTimeout(ctx, r.waitTimeout())
	defer cancel()
	started := r.now()
	for {
		now := r.now()
		st, err := r.Leases.Acquire(ctx, a.Name, r.Owner, now, now.Add(r.leaseDuration()))
		if errors.Is(err, lease.ErrHeld) {
			if q.kind == scheduled {
				return Result{}, errBusy
			}
			res, done, err := r.await(waitCtx, a, q, st, started)
			if done {
				return res, err
			}
			continue
		}
		if err != nil {
			return Result{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
		}
		return r.hold(ctx, a, q, st, now)
	}
}

var errBusy = errors.New("refresh: another instance holds the lease")

// errNotDue is hold's answer to a scheduled run that finds the app no longer
// due once it holds the lease.
var errNotDue = errors.New("refresh: not due")

// await polls the state while another owner holds the lease (P2: coalescing).
// done is false when the lease is free again and the caller should try to
// take it.
func (r *Refresher) await(ctx context.Context, a registry.App, q request, held lease.State, started time.Time) (Result, bool, error) {
	// The interval grows by half each time, up to 10 PollIntervals: a burst
	// of waiters reads the item often while a refresh usually finishes and
	// rarely afterwards (a thousand waiters polling every 100 ms would be
	// 10,000 reads a second of one item, past a DynamoDB partition's 3,000).
	wait := r.pollInterval()
	for {
		err := sleep(ctx, wait)
		wait = min(wait*3/2, 10*r.pollInterval())
		if err != nil {
			r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeLockTimeout})
			return Result{}, true, fmt.Errorf("%w (app %s)", ErrLockTimeout, a.Name)
		}
		st, err := r.Leases.Get(ctx, a.Name)
		if err != nil {
			return Result{}, true, fmt.Errorf("refresh: %s: %w", a.Name, err)
		}
		now := r.now()
		if st.Generation != held.Generation && st.Version > 0 {
			cur, err := r.current(ctx, a.Name, st)
			if err != nil {
				return Result{}, true, err
			}
			if cur.Token != "" && (q.kind != onDemand || cur.Token != q.stale) {
				cur.Refreshed = true
				r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeCoalesced})
				return cur, true, nil
			}
		}
		if q.kind == onDemand && st.VerifiedFP == wechat.Fingerprint(q.stale) && !st.VerifiedAt.Before(started.Add(-r.verifiedFor())) {
			// The holder asked WeChat: the claimed token is fine.
			cur, err := r.current(ctx, a.Name, st)
			if err == nil {
				r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeCoalesced})
			}
			return cur, true, err
		}
		if !st.LastErrorAt.IsZero() && !st.LastErrorAt.Before(started) && st.Generation == held.Generation {
			r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeWaitFailed, ErrCode: st.LastErrCode, Class: st.LastErrorClass})
			return Result{}, true, &FailedError{App: a.Name, ErrCode: st.LastErrCode, Class: st.LastErrorClass, Message: st.LastError}
		}
		if !st.Leased(now) {
			return Result{}, false, nil
		}
	}
}

// hold does the work of a lease holder. The lease lasts until
// acquired+LeaseDuration; every call below runs under a context that ends
// LeaseMargin before that (P4).
func (r *Refresher) hold(ctx context.Context, a registry.App, q request, st lease.State, acquired time.Time) (Result, error) {
	work, cancel := context.WithTimeout(ctx, r.leaseDuration()-r.leaseMargin())
	defer cancel()
	log := r.logger().With("app", a.Name, "reason", q.kind.String(), "from_generation", st.Generation)
	var fields lease.Fields
	release := func() {
		// Released even when ctx is done, under a bounded context of its own.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer rcancel()
		if err := r.Leases.Release(rctx, a.Name, r.Owner, r.now(), fields); err != nil {
			log.WarnContext(ctx, "lease release failed", "error", err.Error())
		}
	}

	cur, err := r.current(work, a.Name, st)
	if err != nil {
		release()
		return Result{}, err
	}
	cur, err = r.reconcile(work, a, st, cur, log)
	if err != nil {
		release()
		return Result{}, err
	}
	now := r.now()

	switch q.kind {
	case onDemand:
		if cur.Token != "" && cur.Token != q.stale {
			release()
			cur.Refreshed = true
			r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeServed})
			return cur, nil
		}
	case ensure:
		if cur.Token != "" && !cur.ExpiresAt.IsZero() && now.Before(cur.ExpiresAt) {
			release()
			r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeServed})
			return cur, nil
		}
	case scheduled:
		if !r.due(a, st, cur, now) {
			release()
			return cur, errNotDue
		}
	}

	refuse := func(e *RefusedError) (Result, error) {
		release()
		r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeRefused, ErrCode: e.ErrCode, RetryAfter: e.RetryAfter})
		return Result{}, e
	}
	if q.kind != force && st.BlockedUntil.After(now) {
		return refuse(&RefusedError{App: a.Name, Reason: ReasonBlocked, RetryAfter: st.BlockedUntil.Sub(now), ErrCode: st.LastErrCode, Class: st.LastErrorClass, Current: cur})
	}
	day := beijingDay(now)
	calls := 0
	if st.CallsDay == day {
		calls = st.CallsToday
	}
	if calls >= a.DailyBudget {
		return refuse(&RefusedError{App: a.Name, Reason: ReasonDailyBudget, RetryAfter: nextBeijingMidnight(now).Sub(now), Current: cur})
	}
	if (q.kind == onDemand || q.kind == force) && !st.LastOnDemandAt.IsZero() && now.Sub(st.LastOnDemandAt) < a.MinInterval {
		return refuse(&RefusedError{App: a.Name, Reason: ReasonMinInterval, RetryAfter: a.MinInterval - now.Sub(st.LastOnDemandAt), Current: cur})
	}

	drift := false
	if q.kind == onDemand && cur.Token != "" {
		// P8: check the claim before spending quota or rotating everybody's token.
		err := r.check(work, a, cur.Token)
		switch {
		case err == nil:
			fp := wechat.Fingerprint(cur.Token)
			fields.VerifiedFP, fields.VerifiedAt = &fp, now
			release()
			log.InfoContext(ctx, "claim refused: WeChat accepts the published token", "fingerprint", fp)
			r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeClaimRejected})
			return cur, nil
		case wechat.IsTokenInvalid(err):
			var we *wechat.Error
			if errors.As(err, &we) && we.Code == 40001 && cur.ExpiresAt.After(now) {
				// P9: wxtoken never supersedes its own published token
				// without publishing the new one; someone else did.
				drift = true
			}
		default:
			log.WarnContext(ctx, "could not check the claimed token; refreshing", "error", err.Error())
		}
	}

	calls++
	fields.CallsDay, fields.CallsToday = &day, &calls
	if q.kind == onDemand || q.kind == force {
		fields.LastOnDemandAt = now
	}
	tok, err := r.fetch(work, a, q.kind == force)
	if err != nil {
		r.recordFailure(&fields, a, err, now)
		release()
		logFailure(ctx, log, err)
		r.observe(ctx, failureEvent(a, q, err, calls))
		return Result{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}

	if a.Mode == registry.Stable && q.kind != force && cur.Token != "" && tok.AccessToken != cur.Token &&
		!cur.ExpiresAt.IsZero() && now.Before(cur.ExpiresAt.Add(-r.stableWindow())) {
		// Normal mode hands out a new token only in the final window: a
		// new one earlier means someone forced a refresh (P9).
		drift = true
	}
	if drift {
		n := st.DriftCount + 1
		fields.DriftCount, fields.LastDriftAt = &n, now
		log.ErrorContext(ctx, "token rotated behind wxtoken's back: another party fetches with this app's secret",
			"event", "drift", "published_fingerprint", wechat.Fingerprint(cur.Token), "mode", string(a.Mode))
	}

	if tok.AccessToken == cur.Token {
		// Stable normal mode answered with the token already published:
		// nothing to publish; the lease release records the call.
		fields.ClearError = true
		release()
		cur.ExpiresAt = tok.ExpiresAt
		r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeUnchanged, CallsToday: calls, Drift: drift})
		return cur, nil
	}

	fields.ClearError = true
	commit := lease.Commit{Fingerprint: tok.Fingerprint(), Mode: string(a.Mode), FetchedAt: tok.FetchedAt, ExpiresAt: tok.ExpiresAt, Fields: fields}
	if err := r.Leases.Commit(work, a.Name, r.Owner, st.Generation, r.now(), commit); err != nil {
		// Fenced: the lease ran out (P4). The token is dropped unpublished.
		if !errors.Is(err, lease.ErrFenced) {
			// Not fenced (DynamoDB throttled or unreachable): the lease is
			// still ours. Give it back with the call it cost, rather than
			// leave on-demand callers waiting for it to expire.
			msg := "commit failed: " + err.Error()
			fields.ClearError, fields.LastError, fields.LastErrorAt = false, &msg, r.now()
			release()
		}
		log.ErrorContext(ctx, "lease lost before publishing; token discarded", "error", err.Error(), "fingerprint", tok.Fingerprint())
		r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeFenced, CallsToday: calls, Drift: drift})
		return Result{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}
	gen := st.Generation + 1
	fields = lease.Fields{}
	version, err := r.Store.Put(work, a.Name, tok.AccessToken)
	if err != nil {
		msg := "publish failed: " + err.Error()
		fields.LastError, fields.LastErrorAt = &msg, r.now()
		release()
		log.ErrorContext(ctx, "publish to SSM failed", "error", err.Error(), "fingerprint", tok.Fingerprint())
		r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomePublishFailed, CallsToday: calls, Drift: drift})
		return Result{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}
	if err := r.Leases.Confirm(work, a.Name, gen, version, r.now()); err != nil {
		log.ErrorContext(ctx, "could not record the published version", "error", err.Error(), "version", version)
	}
	release()
	log.InfoContext(ctx, "token refreshed", "event", "refreshed", "generation", gen, "version", version,
		"fingerprint", tok.Fingerprint(), "expires_at", tok.ExpiresAt, "calls_today", calls)
	r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeRefreshed, CallsToday: calls, Drift: drift})
	return Result{App: a.Name, Token: tok.AccessToken, Version: version, ExpiresAt: tok.ExpiresAt, Refreshed: true}, nil
}

// reconcile repairs SSM when it disagrees with the committed generation (P4):
// a parameter overwritten out of order is put back to the committed token,
// and a publish whose version was not recorded is confirmed.
func (r *Refresher) reconcile(ctx context.Context, a registry.App, st lease.State, cur Result, log *slog.Logger) (Result, error) {
	if !st.HasToken() || cur.Token != "" && wechat.Fingerprint(cur.Token) == st.Fingerprint {
		if st.HasToken() && st.Version == 0 && cur.Token != "" {
			if err := r.Leases.Confirm(ctx, a.Name, st.Generation, cur.Version, r.now()); err == nil {
				log.InfoContext(ctx, "confirmed an unrecorded publish", "version", cur.Version)
			}
		}
		return cur, nil
	}
	if st.Version == 0 {
		// The committed token never reached SSM: it is lost; a refresh
		// will replace it.
		return cur, nil
	}
	good, err := r.Store.GetVersion(ctx, a.Name, st.Version)
	if err != nil || wechat.Fingerprint(good) != st.Fingerprint {
		log.WarnContext(ctx, "SSM disagrees with the table and the committed version is unreadable", "version", st.Version)
		return cur, nil
	}
	v, err := r.Store.Put(ctx, a.Name, good)
	if err != nil {
		return cur, fmt.Errorf("refresh: %s: repair: %w", a.Name, err)
	}
	if err := r.Leases.Confirm(ctx, a.Name, st.Generation, v, r.now()); err != nil {
		return cur, fmt.Errorf("refresh: %s: repair: %w", a.Name, err)
	}
	log.WarnContext(ctx, "repaired SSM: it held a token other than the committed one", "event", "repaired",
		"found_fingerprint", wechat.Fingerprint(cur.Token), "committed_fingerprint", st.Fingerprint, "version", v)
	return Result{App: a.Name, Token: good, Version: v, ExpiresAt: st.ExpiresAt}, nil
}

// due reports whether a scheduled run should refresh the app (P3).
func (r *Refresher) due(a registry.App, st lease.State, cur Result, now time.Time) bool {
	switch {
	case !st.HasToken() || cur.Token == "" || cur.ExpiresAt.IsZero():
		return true // never refreshed, or SSM does not hold the committed token
	case st.BlockedUntil.After(now):
		return false
	case st.Mode != string(a.Mode):
		return true // the app switched modes
	case a.Mode == registry.Stable:
		return !now.Before(cur.ExpiresAt.Add(-(r.stableWindow() - r.stableSlack())))
	default:
		return !now.Before(cur.ExpiresAt.Add(-a.RefreshMargin))
	}
}

func (r *Refresher) fetch(ctx context.Context, a registry.App, forced bool) (wechat.Token, error) {
	secret, _, err := r.Store.Secret(ctx, a.Name)
	if err != nil {
		return wechat.Token{}, err
	}
	switch a.Mode {
	case registry.Classic:
		return r.WeChat.Token(ctx, a.AppID, secret)
	case registry.GetToken:
		return r.WeChat.WeComToken(ctx, a.AppID, secret)
	default:
		return r.WeChat.StableToken(ctx, a.AppID, secret, forced)
	}
}

func (r *Refresher) check(ctx context.Context, a registry.App, token string) error {
	if a.Mode == registry.GetToken {
		return r.WeChat.CheckWeComToken(ctx, token)
	}
	return r.WeChat.CheckToken(ctx, token)
}

// recordFailure applies the errcode policy (P6) to the fields the lease
// release writes: what failed, and until when automatic calls pause.
func (r *Refresher) recordFailure(f *lease.Fields, a registry.App, err error, now time.Time) {
	msg := err.Error()
	class := wechat.Classify(err).String()
	f.LastError, f.LastErrorClass, f.LastErrorAt = &msg, &class, now
	code := 0
	var we *wechat.Error
	if errors.As(err, &we) {
		code = we.Code
	}
	f.LastErrCode = &code
	var until time.Time
	switch wechat.Classify(err) {
	case wechat.ClassMinuteQuota:
		until = now.Truncate(time.Minute).Add(time.Minute)
	case wechat.ClassDailyQuota:
		until = nextBeijingMidnight(now)
	case wechat.ClassConfig, wechat.ClassProgramming:
		until = now.Add(r.configBlock())
	}
	if !until.IsZero() {
		f.BlockedUntil = &until
	}
}

func logFailure(ctx context.Context, log *slog.Logger, err error) {
	attrs := []any{"event", "refresh_failed", "class", wechat.Classify(err).String(), "error", err.Error()}
	var we *wechat.Error
	if errors.As(err, &we) {
		attrs = append(attrs, "errcode", we.Code, "rid", we.RID)
	}
	if ip, ok := wechat.WhitelistIP(err); ok {
		attrs = append(attrs, "whitelist_ip", ip)
	}
	log.ErrorContext(ctx, "refresh failed", attrs...)
}

// --- the schedule

// Outcome is what a scheduled run did for one app.
type Outcome struct {
	App string
	// Status is refreshed, not_due, busy (another instance holds the
	// lease), blocked (calls paused after a WeChat error; Err is a
	// *RefusedError with its errcode), refused, failed, invalid (the
	// registration is malformed) or deferred (the run ran out of time).
	Status string
	Err    error
	Result Result
	// ExpiresAt is when the app's committed token expires, as the run saw
	// it (zero: no token yet).
	ExpiresAt time.Time
}

// Report is a scheduled run's account.
type Report struct {
	Apps     int
	Outcomes []Outcome
	Elapsed  time.Duration
}

// Count returns the number of outcomes with status.
func (rep Report) Count(status string) int {
	n := 0
	for _, o := range rep.Outcomes {
		if o.Status == status {
			n++
		}
	}
	return n
}

// RefreshDue refreshes every registered app that is due, Concurrency at a
// time; one app's failure never stops another's (P10). Apps left when ctx is
// about to end are reported deferred, for the next run. The error is
// non-nil only when the apps could not be listed.
func (r *Refresher) RefreshDue(ctx context.Context) (Report, error) {
	began := time.Now()
	apps, bad, err := r.Apps.List(ctx)
	if err != nil {
		return Report{}, err
	}
	states, err := r.Leases.List(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("refresh: %w", err)
	}
	byApp := make(map[string]lease.State, len(states))
	for _, st := range states {
		byApp[st.App] = st
	}
	rep := Report{Apps: len(apps) + len(bad)}
	for _, e := range bad {
		var ie *registry.InvalidError
		name := ""
		if errors.As(e, &ie) {
			name = ie.App
		}
		rep.Outcomes = append(rep.Outcomes, Outcome{App: name, Status: "invalid", Err: e})
	}

	now := r.now()
	registered := make(map[string]bool, len(apps)+len(bad))
	for _, a := range apps {
		registered[a.Name] = true
	}
	for _, e := range bad {
		var ie *registry.InvalidError
		if errors.As(e, &ie) {
			registered[ie.App] = true
		}
	}
	for _, st := range states {
		if !registered[st.App] && st.CleanupAt.IsZero() {
			// A removed app: let DynamoDB's TTL clean its state up.
			if err := r.Leases.Expire(ctx, st.App, now, now.Add(DefaultCleanupAfter)); err != nil {
				r.logger().WarnContext(ctx, "could not mark removed app's state for cleanup", "app", st.App, "error", err.Error())
			}
		}
	}
	var due []registry.App
	for _, a := range apps {
		if a.Disabled {
			continue
		}
		st := byApp[a.Name]
		if st.BlockedUntil.After(now) {
			// Paused after a WeChat error (P6): reported on every run, so
			// that what needs a person keeps saying so.
			rep.Outcomes = append(rep.Outcomes, Outcome{App: a.Name, Status: "blocked", Err: &RefusedError{
				App: a.Name, Reason: ReasonBlocked, RetryAfter: st.BlockedUntil.Sub(now), ErrCode: st.LastErrCode, Class: st.LastErrorClass}})
			continue
		}
		// A cheap pre-filter on the listed state; hold re-checks under the lease.
		if st.HasToken() && st.Version > 0 && !st.ExpiresAt.IsZero() && st.Mode == string(a.Mode) &&
			!r.due(a, st, Result{Token: "published", ExpiresAt: st.ExpiresAt}, now) && !r.inconsistent(ctx, a.Name, st, now) {
			rep.Outcomes = append(rep.Outcomes, Outcome{App: a.Name, Status: "not_due"})
			continue
		}
		due = append(due, a)
	}

	outcomes := make([]Outcome, len(due))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < r.concurrency(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				outcomes[i] = r.refreshOne(ctx, due[i])
			}
		}()
	}
	for i := range due {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	rep.Outcomes = append(rep.Outcomes, outcomes...)
	for i, o := range rep.Outcomes {
		switch {
		case !o.Result.ExpiresAt.IsZero():
			rep.Outcomes[i].ExpiresAt = o.Result.ExpiresAt
		case byApp[o.App].HasToken():
			rep.Outcomes[i].ExpiresAt = byApp[o.App].ExpiresAt
		}
	}
	rep.Elapsed = time.Since(began)
	return rep, nil
}

// inconsistent reports whether this is the run that checks the app's SSM
// Version (one in CheckEvery/minute runs, spread by app name) and SSM holds a
// version other than the committed one (P4: a run that finds SSM and the
// table disagree repairs SSM).
func (r *Refresher) inconsistent(ctx context.Context, app string, st lease.State, now time.Time) bool {
	every := int64(orDefault(r.CheckEvery, DefaultCheckEvery) / time.Minute)
	if every < 1 {
		every = 1
	}
	h := int64(0)
	for i := 0; i < len(app); i++ {
		h = (h*31 + int64(app[i])) % every
	}
	if (now.Unix()/60+h)%every != 0 {
		return false
	}
	v, err := r.Store.Version(ctx, app)
	return err == nil && v != st.Version
}

func (r *Refresher) refreshOne(ctx context.Context, a registry.App) Outcome {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < MinRunTime {
		// Too little time left for a WeChat call and a publish: leave it
		// to the next run rather than start what cannot finish. (A refresh
		// that starts runs under a context ending at the earlier of the
		// deadline and the lease's end, so the lease still cannot outlive
		// it.)
		return Outcome{App: a.Name, Status: "deferred"}
	}
	res, err := r.run(ctx, a, request{kind: scheduled})
	var refused *RefusedError
	switch {
	case err == nil:
		return Outcome{App: a.Name, Status: "refreshed", Result: res}
	case errors.Is(err, errNotDue):
		return Outcome{App: a.Name, Status: "not_due"}
	case errors.Is(err, errBusy):
		return Outcome{App: a.Name, Status: "busy"}
	case errors.As(err, &refused):
		return Outcome{App: a.Name, Status: "refused", Err: err}
	default:
		return Outcome{App: a.Name, Status: "failed", Err: err}
	}
}

// --- helpers

var beijing = time.FixedZone("CST", 8*3600)

// beijingDay is the date WeChat's daily quotas count in.
func beijingDay(t time.Time) string { return t.In(beijing).Format(time.DateOnly) }

func nextBeijingMidnight(t time.Time) time.Time {
	b := t.In(beijing)
	return time.Date(b.Year(), b.Month(), b.Day()+1, 0, 0, 0, 0, beijing)
}

// sleep waits about d (±50% jitter, so pollers spread out) or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	j := d/2 + rand.N(d+1)
	t := time.NewTimer(j)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Refresher) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Refresher) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (r *Refresher) leaseDuration() time.Duration {
	return orDefault(r.LeaseDuration, DefaultLeaseDuration)
}
func (r *Refresher) leaseMargin() time.Duration { return orDefault(r.LeaseMargin, DefaultLeaseMargin) }
func (r *Refresher) waitTimeout() time.Duration { return orDefault(r.WaitTimeout, DefaultWaitTimeout) }
func (r *Refresher) pollInterval() time.Duration {
	return orDefault(r.PollInterval, DefaultPollInterval)
}
func (r *Refresher) stableWindow() time.Duration {
	return orDefault(r.StableWindow, DefaultStableWindow)
}
func (r *Refresher) stableSlack() time.Duration { return orDefault(r.StableSlack, DefaultStableSlack) }
func (r *Refresher) configBlock() time.Duration { return orDefault(r.ConfigBlock, DefaultConfigBlock) }
func (r *Refresher) verifiedFor() time.Duration { return orDefault(r.VerifiedFor, DefaultVerifiedFor) }
func (r *Refresher) concurrency() int {
	if r.Concurrency > 0 {
		return r.Concurrency
	}
	return DefaultConcurrency
}
