// Package refresh is wxtoken's refresher: it decides when an app's WeChat
// token must be replaced, makes sure only one fetcher calls WeChat for an app
// at a time across every Lambda instance (a lease in DynamoDB), publishes the
// new token to SSM, and lets concurrent callers share one refresh.
//
// The two entry points are RefreshDue, for the schedule, and Refresh, for a
// business server that was told by WeChat that its token is bad. ForceRefresh
// is the operator's escape hatch. docs/design.md states the properties
// (P1..P10) and invariants that the comments below name.
//
// Where to find what: refresh.go has the entry points and the configuration;
// policy.go the errcode policy table and the pure decisions (due, admit,
// what a failure changes); wait.go taking the lease or waiting for its
// holder; holder.go the holder's transaction as named steps; sweep.go the
// scheduled sweep over every app; seal.go the sealed copy of a token not yet
// published; observe.go events and status.
//
// Errors: ErrUnknownApp for an app not registered; *RefusedError when a
// budget, an interval or a pause refuses a WeChat call (it carries the
// current token); *FailedError when a refresh in which a caller took part
// failed; ErrUnverified when WeChat could not say whether a claimed token is
// bad; ErrLockTimeout when another refresh did not finish in time; wrapped
// *wechat.Error and SDK errors otherwise. Decide maps any of them to the
// policy's Decision. No error, log line or String form here contains a token
// or a secret.
package refresh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/rotation"
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
	PutMeta(ctx context.Context, key string, m rotation.Meta) error
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
	Ticket(ctx context.Context, accessToken string, typ wechat.TicketType) (wechat.Token, error)
	WeComJSAPITicket(ctx context.Context, accessToken string) (wechat.Token, error)
	WeComAgentTicket(ctx context.Context, accessToken string) (wechat.Token, error)
}

// Defaults for the Refresher's zero fields.
const (
	DefaultLeaseDuration = 60 * time.Second
	DefaultLeaseMargin   = 5 * time.Second
	// DefaultWaitTimeout bounds a caller's wait for another refresh when
	// its context has no deadline; with a deadline, it waits until then.
	DefaultWaitTimeout  = DefaultLeaseDuration
	DefaultPollInterval = 100 * time.Millisecond
	DefaultStableWindow = 300 * time.Second
	DefaultStableSlack  = 30 * time.Second
	DefaultConcurrency  = 8
	DefaultConfigBlock  = 30 * time.Minute
	DefaultVerifiedFor  = 60 * time.Second
	DefaultCheckEvery   = 10 * time.Minute
	// DefaultAttemptTimeout caps one app's scheduled refresh, so that an
	// app whose WeChat calls hang cannot hold a worker for the whole run.
	DefaultAttemptTimeout = 15 * time.Second
	// DefaultCheckRate bounds the scheduled run's SSM version checks per
	// second (SSM's GetParameter throughput is shared with consumers).
	DefaultCheckRate = 10
	// MinRunTime is the least time a scheduled run must have left to start
	// an app's refresh; with less, the app is deferred to the next run.
	MinRunTime = 10 * time.Second
	// DefaultCleanupAfter is how long the state of a removed app is kept
	// (for its history) before DynamoDB's TTL deletes it.
	DefaultCleanupAfter = 7 * 24 * time.Hour
)

// Refresher refreshes tokens. Set the four dependencies and Owner; zero
// tunables take the defaults above. A Refresher is safe for concurrent use.
type Refresher struct {
	Apps   Apps
	Store  Store
	Leases Leases
	WeChat WeChat
	// Owner identifies this instance in leases (a Lambda instance id); each
	// acquisition adds a nonce of its own, so that two refreshes in one
	// process fence each other too.
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
	// WaitTimeout bounds how long a caller whose context has no deadline
	// waits for another's refresh (with a deadline, it waits until then);
	// PollInterval is how often it looks at first (then less often, up to
	// ten times as long).
	WaitTimeout, PollInterval time.Duration
	// StableWindow is WeChat's final window in which stable_token rotates;
	// StableSlack how far inside it a stable refresh is due (so that a
	// conservative expiry never asks a moment too early).
	StableWindow, StableSlack time.Duration
	// Concurrency bounds the apps refreshed at once by RefreshDue;
	// AttemptTimeout caps each app's scheduled refresh.
	Concurrency    int
	AttemptTimeout time.Duration
	// ConfigBlock pauses calls after a configuration error (a new secret
	// or a success ends the pause sooner).
	ConfigBlock time.Duration
	// VerifiedFor: after WeChat accepted a token claimed invalid, further
	// claims against it within this time are answered without a check.
	VerifiedFor time.Duration
	// CheckEvery is how often RefreshDue compares each app's SSM Version
	// with the table (spread over the runs by app), to find and repair a
	// parameter written out of order; CheckRate bounds those reads per
	// second. Checking every app on every run would spend SSM's shared
	// GetParameter throughput.
	CheckEvery time.Duration
	CheckRate  int
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
// returned, refreshed only when missing or expired. Refusals (a pause, the
// budget, the minimum interval) are decided from the state before queueing
// for the lease.
func (r *Refresher) Refresh(ctx context.Context, app, stale string) (Result, error) {
	return r.refresh(ctx, app, "", stale)
}

// RefreshTicket is Refresh for one of the app's tickets: with stale set,
// the caller claims the published ticket stale is invalid ("invalid
// signature"); WeChat has no call that checks a ticket, so the claim is
// taken at its word, within the minimum interval and the ticket budget.
// It returns ErrUnknownTicket when the app has not opted into the ticket.
// A ticket call WeChat answers 40001/42001/40014 means the access token is
// bad: the token is refreshed through Refresh (compare-and-refresh), then
// the ticket asked for once more, never in a loop.
func (r *Refresher) RefreshTicket(ctx context.Context, app string, ticket registry.Ticket, stale string) (Result, error) {
	if ticket == "" {
		return Result{}, fmt.Errorf("%w: no ticket named", ErrUnknownTicket)
	}
	res, err := r.refresh(ctx, app, ticket, stale)
	// Inside, a ticket goes by its credential key; its caller asked about
	// the app.
	if res.App != "" {
		res.App = app
	}
	var refused *RefusedError
	if errors.As(err, &refused) && refused.Current.App != "" {
		refused.Current.App = app
	}
	return res, err
}

// refresh serves Refresh and RefreshTicket for the credential of app. The
// answer, and the current value a refusal carries, say when the schedule
// plans to replace the value.
func (r *Refresher) refresh(ctx context.Context, app string, ticket registry.Ticket, stale string) (Result, error) {
	c, err := r.credential(ctx, app, ticket)
	if err != nil {
		return Result{}, err
	}
	res, err := r.serve(ctx, c, stale)
	return r.scheduled(c, res, err)
}

// scheduled sets RotatesAt on res and on the current value of a refusal.
func (r *Refresher) scheduled(c cred, res Result, err error) (Result, error) {
	a := c.rules()
	res.RotatesAt = rotatesAt(r.policy(), a, res.ExpiresAt)
	var refused *RefusedError
	if errors.As(err, &refused) {
		refused.Current.RotatesAt = rotatesAt(r.policy(), a, refused.Current.ExpiresAt)
	}
	return res, err
}

// serve answers a caller that wants c's value (stale: the value it claims
// WeChat rejected).
func (r *Refresher) serve(ctx context.Context, c cred, stale string) (Result, error) {
	a := c.rules()
	q := request{kind: ensure, stale: stale}
	if stale != "" {
		q.kind = onDemand
	}
	// Fast path: no lease, no WeChat.
	st, err := r.Leases.Get(ctx, a.Name)
	if err != nil {
		return Result{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}
	cur, err := r.current(ctx, a, st)
	if err != nil {
		return Result{}, err
	}
	now := r.now()
	if st.HasToken() && sameAccount(a, st) && cur.ExpiresAt.IsZero() {
		// SSM does not hold the committed token (a sealed one waits for
		// its publish, or a write came out of order): the holder repairs
		// that and may answer without calling WeChat. SSM's value is
		// neither served (it may be superseded, or the former account's
		// after a re-point) nor the ground of a refusal.
		return r.run(ctx, c, q)
	}
	if res, ok := r.answered(ctx, a, q, st, cur, now); ok {
		return res, nil
	}
	if e := r.refused(ctx, a, q, st, cur, now); e != nil {
		return Result{}, e
	}
	return r.run(ctx, c, q)
}

// answered returns the answer a caller gets from the state and the published
// token alone, without a WeChat call: the published token when it is not the
// one claimed invalid (P2), or valid for an ensure request, or recently
// verified with WeChat (P8).
func (r *Refresher) answered(ctx context.Context, a registry.App, q request, st lease.State, cur Result, now time.Time) (Result, bool) {
	if cur.Token == "" {
		return Result{}, false
	}
	outcome := OutcomeServed
	switch {
	case q.kind == onDemand && cur.Token != q.stale:
		cur.Refreshed = true
	case q.kind == ensure && !cur.ExpiresAt.IsZero() && now.Before(cur.ExpiresAt):
	case q.kind == onDemand && verified(r.policy(), st, wechat.Fingerprint(cur.Token), now):
		outcome = OutcomeClaimRejected
	default:
		return Result{}, false
	}
	r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: outcome})
	return cur, true
}

// refused decides a refusal from the state before anyone queues for the
// lease (the holder decides again under it), so that a burst of callers of
// a paused or over-budget app is answered at once with the current token.
// It reads nothing more: a secret replaced during a pause ends the pause at
// the next scheduled run (or a holder's admit), not for each caller of a
// burst at the cost of an SSM read each.
func (r *Refresher) refused(ctx context.Context, a registry.App, q request, st lease.State, cur Result, now time.Time) *RefusedError {
	f := admit(a, st, q.kind, now, 0)
	if f == nil {
		return nil
	}
	e := &RefusedError{App: a.Name, Reason: f.reason, RetryAfter: f.retryAfter, ErrCode: f.errCode, Class: f.class, Current: cur}
	r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeRefused, ErrCode: e.ErrCode, Class: e.Class, RetryAfter: e.RetryAfter})
	return e
}

// secretVersion returns the version of the app's secret, or 0 when it cannot
// be read (a pause then holds).
func (r *Refresher) secretVersion(ctx context.Context, app string) int64 {
	v, err := r.Store.SecretVersion(ctx, app)
	if err != nil {
		return 0
	}
	return v
}

// ForceRefresh obtains a new token for app whatever the published one, with
// stable_token's force_refresh in stable mode (WeChat allows 20 a day, 30 s
// apart). It bypasses a pause of normal-mode calls but not one of forced
// calls, the budget or the minimum interval.
func (r *Refresher) ForceRefresh(ctx context.Context, app string) (Result, error) {
	c, err := r.credential(ctx, app, "")
	if err != nil {
		return Result{}, err
	}
	res, err := r.run(ctx, c, request{kind: force})
	return r.scheduled(c, res, err)
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
// agrees that this is the committed token. A token of another account (the
// app was re-pointed) is not the app's: current reports none.
func (r *Refresher) current(ctx context.Context, a registry.App, st lease.State) (Result, error) {
	tok, ver, err := r.Store.Get(ctx, a.Name)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return Result{App: a.Name}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}
	if !sameAccount(a, st) {
		return Result{App: a.Name, Version: ver}, nil
	}
	res := Result{App: a.Name, Token: tok, Version: ver}
	if st.HasToken() && wechat.Fingerprint(tok) == st.Fingerprint {
		res.ExpiresAt = st.ExpiresAt
	}
	return res, nil
}

// acquisition returns a lease owner unique to one acquisition.
func (r *Refresher) acquisition() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return r.Owner + "#" + hex.EncodeToString(b[:])
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

func (r *Refresher) policy() policyConfig {
	return policyConfig{
		stableWindow: orDefault(r.StableWindow, DefaultStableWindow),
		stableSlack:  orDefault(r.StableSlack, DefaultStableSlack),
		configBlock:  orDefault(r.ConfigBlock, DefaultConfigBlock),
		verifiedFor:  orDefault(r.VerifiedFor, DefaultVerifiedFor),
	}
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
func (r *Refresher) attemptTimeout() time.Duration {
	return orDefault(r.AttemptTimeout, DefaultAttemptTimeout)
}
func (r *Refresher) concurrency() int {
	if r.Concurrency > 0 {
		return r.Concurrency
	}
	return DefaultConcurrency
}
func (r *Refresher) checkRate() int {
	if r.CheckRate > 0 {
		return r.CheckRate
	}
	return DefaultCheckRate
}
