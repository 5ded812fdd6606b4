package refresh

import (
	"context"
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

// errNoSecret: the app's secret parameter does not exist (a configuration
// error: the operator must create it).
var errNoSecret = errors.New("refresh: the app's secret parameter does not exist")

// txn is one lease holder's transaction (design P1, P4): check what is
// published, admit the call, verify a claim, fetch from WeChat, commit to the
// table (the fencing write), publish to SSM, confirm the version, release.
// Every call runs under work, which ends LeaseMargin before the lease does.
type txn struct {
	r *Refresher
	c cred
	// a is c.rules(): the registration the decisions read, named by the
	// credential's key (the lease and store calls' name).
	a     registry.App
	q     request
	st    lease.State // as of the acquisition, updated by reconcile
	owner string
	ctx   context.Context // the caller's
	work  context.Context // ends before the lease
	log   *slog.Logger
	now   time.Time
	cur   Result
	// fields are written by the release, with the lease.
	fields lease.Fields
	// secret and its version, once read.
	secret        string
	secretVersion int64
}

// hold does the work of a lease holder. The lease lasts until
// acquired+LeaseDuration; every call below runs under a context that ends
// LeaseMargin before that, counted on the refresher's clock (P4).
func (r *Refresher) hold(ctx context.Context, c cred, q request, st lease.State, owner string, acquired time.Time) (Result, error) {
	left := acquired.Add(r.leaseDuration() - r.leaseMargin()).Sub(r.now())
	work, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	log := r.logger().With("app", c.app.Name)
	if c.ticket != "" {
		log = log.With("ticket", string(c.ticket))
	}
	t := &txn{r: r, c: c, a: c.rules(), q: q, st: st, owner: owner, ctx: ctx, work: work,
		log: log.With("reason", q.kind.String(), "from_generation", st.Generation)}
	res, err := t.run()
	t.release()
	return res, err
}

func (t *txn) run() (Result, error) {
	if res, err, done := t.check(); done {
		return res, err
	}
	if e := t.admit(); e != nil {
		t.r.observe(t.ctx, Event{App: t.a.Name, Reason: t.q.kind.String(), Outcome: OutcomeRefused, ErrCode: e.ErrCode, Class: e.Class, RetryAfter: e.RetryAfter})
		return Result{}, e
	}
	drift, res, err, done := t.verify()
	if done {
		return res, err
	}
	tok, err := t.fetch()
	if err != nil {
		return Result{}, err
	}
	return t.commit(tok, drift)
}

// release gives the lease back with the fields the transaction recorded,
// even when the caller's context is done, under a bounded context of its own.
func (t *txn) release() {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), 5*time.Second)
	defer cancel()
	if err := t.r.Leases.Release(rctx, t.a.Name, t.owner, t.r.now(), t.fields); err != nil {
		t.log.WarnContext(t.ctx, "lease release failed", "error", err.Error())
	}
}

// check reads what is published, repairs SSM where it disagrees with the
// table, and answers the request when no WeChat call is needed.
func (t *txn) check() (Result, error, bool) {
	r := t.r
	cur, err := r.current(t.work, t.a, t.st)
	if err != nil {
		return Result{}, err, true
	}
	published := t.st.Pending != "" && t.st.Version == 0
	cur, perr := t.reconcile(cur)
	published = published && perr == nil && t.st.Version > 0
	if t.st.HasToken() && sameAccount(t.a, t.st) && cur.Token != "" && wechat.Fingerprint(cur.Token) != t.st.Fingerprint {
		// reconcile could not make SSM hold the committed token (its seal
		// cannot be opened, the secret or the committed version cannot be
		// read): SSM's value is not served, it may be superseded or the
		// former account's; the attempt goes on as with no token.
		cur = Result{App: cur.App, Version: cur.Version}
	}
	t.cur, t.now = cur, r.now()
	if perr != nil {
		if t.q.kind != scheduled && cur.Token != "" {
			// SSM refuses the sealed token that WeChat issued: the caller
			// gets it from here while SSM is down.
			r.observe(t.ctx, Event{App: t.a.Name, Reason: t.q.kind.String(), Outcome: OutcomePublishFailed})
			cur.Refreshed = t.q.kind == onDemand && cur.Token != t.q.stale
			return cur, nil, true
		}
		t.failed(perr, 0)
		r.observe(t.ctx, Event{App: t.a.Name, Reason: t.q.kind.String(), Outcome: OutcomePublishFailed, Class: ClassOf(perr)})
		return Result{}, fmt.Errorf("refresh: %s: %w", t.a.Name, perr), true
	}
	if published && t.q.kind == scheduled {
		// The sealed token of an earlier refresh is now published: that
		// is this run's refresh.
		r.observe(t.ctx, Event{App: t.a.Name, Reason: t.q.kind.String(), Outcome: OutcomeRefreshed})
		return cur, nil, true
	}
	if res, ok := r.answered(t.ctx, t.a, t.q, t.st, cur, t.now); ok {
		return res, nil, true
	}
	if t.q.kind == scheduled && due(r.policy(), t.a, t.st, cur.Token != "", cur.ExpiresAt, t.now) == NotDue {
		return cur, errNotDue, true
	}
	return Result{}, nil, false
}

// admit applies the pauses, the budget and the minimum interval (P6, P7).
func (t *txn) admit() *RefusedError {
	sv := int64(0)
	if pausedFor(t.st, t.q.kind, t.now) {
		sv = t.r.secretVersion(t.work, t.c.app.Name)
	}
	f := admit(t.a, t.st, t.q.kind, t.now, sv)
	if f == nil {
		return nil
	}
	return &RefusedError{App: t.a.Name, Reason: f.reason, RetryAfter: f.retryAfter, ErrCode: f.errCode, Class: f.class, Current: t.cur}
}

// verify checks a claim against the published token before spending quota or
// rotating everybody's token (P8). drift reports that WeChat no longer
// accepts a token wxtoken never replaced (P9). When WeChat cannot tell, a
// call that would rotate the token is not made; stable normal mode cannot
// rotate it, so it goes on.
func (t *txn) verify() (drift bool, res Result, err error, done bool) {
	if t.q.kind != onDemand || t.cur.Token == "" || t.c.ticket != "" {
		// WeChat has no call that checks a ticket: a claim against one is
		// taken at its word, within the interval and the budget.
		return false, Result{}, nil, false
	}
	r := t.r
	cerr := r.check(t.work, t.a, t.cur.Token)
	switch {
	case cerr == nil:
		fp := wechat.Fingerprint(t.cur.Token)
		t.fields.VerifiedFP, t.fields.VerifiedAt = &fp, t.now
		t.log.InfoContext(t.ctx, "claim refused: WeChat accepts the published token", "fingerprint", fp)
		r.observe(t.ctx, Event{App: t.a.Name, Reason: t.q.kind.String(), Outcome: OutcomeClaimRejected})
		return false, t.cur, nil, true
	case wechat.IsTokenInvalid(cerr):
		// wxtoken never supersedes its own published token without
		// publishing the new one: someone else did.
		return wechat.IsSuperseded(cerr) && t.cur.ExpiresAt.After(t.now), Result{}, nil, false
	case t.a.Mode == registry.Stable:
		t.log.WarnContext(t.ctx, "could not check the claimed token; asking stable_token in normal mode, which cannot rotate it", "error", cerr.Error())
		return false, Result{}, nil, false
	default:
		t.log.WarnContext(t.ctx, "could not check the claimed token; keeping it (a refresh would rotate it for everybody)", "error", cerr.Error())
		r.observe(t.ctx, Event{App: t.a.Name, Reason: t.q.kind.String(), Outcome: OutcomeUnverified, Class: ClassUnverified})
		err := fmt.Errorf("refresh: %s: %w", t.a.Name, ErrUnverified)
		// Recorded, so that callers waiting on this lease get the same
		// answer instead of each checking again in turn.
		t.failed(err, 0)
		return false, Result{}, err, true
	}
}

// fetch reads the secret and asks WeChat for a token, counting the call
// against the app's budget; a failure is recorded by the policy.
func (t *txn) fetch() (wechat.Token, error) {
	r := t.r
	if err := t.readSecret(); err != nil {
		t.failed(err, -1)
		r.observe(t.ctx, failureEvent(t.a, t.q, err, 0))
		return wechat.Token{}, fmt.Errorf("refresh: %s: %w", t.a.Name, err)
	}
	if t.c.ticket != "" {
		return t.fetchTicket()
	}
	// The call counts against the budget whatever its outcome (failed
	// keeps these fields).
	calls := callsToday(t.st, t.now) + 1
	day := beijingDay(t.now)
	t.fields.CallsDay, t.fields.CallsToday = &day, &calls
	var tok wechat.Token
	var err error
	switch {
	case t.a.Mode == registry.Classic:
		tok, err = r.WeChat.Token(t.work, t.a.AppID, t.secret)
	case t.a.Mode == registry.GetToken:
		tok, err = r.WeChat.WeComToken(t.work, t.a.AppID, t.secret)
	default:
		tok, err = r.WeChat.StableToken(t.work, t.a.AppID, t.secret, t.q.kind == force)
	}
	if err != nil {
		t.failed(err, t.secretVersion)
		if supersedes(t.a, t.q.kind) && mayHaveIssued(err) {
			// WeChat may have issued a token that ended (or will end) the
			// published one: the app is due until a newer one is committed.
			t.fields.SupersededAt = t.now
		}
		logFailure(t.ctx, t.log, err)
		r.observe(t.ctx, failureEvent(t.a, t.q, err, calls))
		return wechat.Token{}, fmt.Errorf("refresh: %s: %w", t.a.Name, err)
	}
	return tok, nil
}

func (t *txn) readSecret() error {
	if t.secret != "" {
		return nil
	}
	s, v, err := t.r.Store.Secret(t.work, t.c.app.Name)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return errNoSecret
	}
	if err != nil {
		return err
	}
	t.secret, t.secretVersion = s, v
	return nil
}

// failed records a failure in the fields the release writes (P6).
func (t *txn) failed(err error, secretVersion int64) {
	f := failureFields(t.r.policy(), t.a, t.q.kind, err, t.r.now(), secretVersion)
	f.CallsDay, f.CallsToday = t.fields.CallsDay, t.fields.CallsToday
	t.fields = f
}

// commit records the token as the next generation (the write that fences,
// P4), with a sealed copy until SSM holds it, then publishes and confirms.
// An answer equal to the published token (stable normal mode) is recorded
// too, so that its expiry is known, without a publish.
func (t *txn) commit(tok wechat.Token, drift bool) (Result, error) {
	r, a, q := t.r, t.a, t.q
	if a.Mode == registry.Stable && t.st.Mode == string(registry.Stable) && q.kind != force && t.cur.Token != "" && tok.AccessToken != t.cur.Token &&
		!t.cur.ExpiresAt.IsZero() && t.now.Before(t.cur.ExpiresAt.Add(-r.policy().stableWindow)) {
		// Normal mode hands out a new token only in the final window: a
		// new one earlier means someone forced a refresh (P9). (Only a
		// published stable token says so: after a switch from classic
		// mode, stable_token's first answer differs by nature.)
		drift = true
	}
	calls := 0
	if t.fields.CallsToday != nil {
		calls = *t.fields.CallsToday
	}
	if drift {
		n := t.st.DriftCount + 1
		t.fields.DriftCount, t.fields.LastDriftAt = &n, t.now
		t.log.ErrorContext(t.ctx, "token rotated behind wxtoken's back: another party fetches with this app's secret",
			"event", "drift", "published_fingerprint", wechat.Fingerprint(t.cur.Token), "mode", string(a.Mode))
	}
	unchanged := t.cur.Token != "" && tok.AccessToken == t.cur.Token
	gen := t.st.Generation + 1
	pending := ""
	if !unchanged {
		var err error
		if pending, err = seal(t.secret, a.AppID, a.Name, gen, tok.AccessToken); err != nil {
			t.log.WarnContext(t.ctx, "could not seal the new token; it is lost if the publish fails", "error", err.Error())
		}
	}
	t.fields.ClearError, t.fields.ClearBlocks = true, true
	if q.kind == onDemand || q.kind == force {
		t.fields.LastOnDemandAt = t.now
	}
	c := lease.Commit{Fingerprint: tok.Fingerprint(), Mode: string(a.Mode), AppID: a.AppID, Kind: string(a.Kind),
		FetchedAt: tok.FetchedAt, ExpiresAt: tok.ExpiresAt, Pending: pending, Fields: t.fields}
	if err := r.Leases.Commit(t.work, a.Name, t.owner, t.st.Generation, r.now(), c); err != nil {
		outcome := OutcomeFenced
		if errors.Is(err, lease.ErrFenced) {
			// The lease ran out (P4): another holder may have moved on.
			// The token is dropped unpublished; the release (which fails
			// if another holder took the lease) records only the call and
			// that the dropped token may end the published one.
			t.fields = lease.Fields{CallsDay: t.fields.CallsDay, CallsToday: t.fields.CallsToday}
			if supersedes(a, q.kind) {
				t.fields.SupersededAt = t.now
			}
		} else {
			// Not fenced (DynamoDB throttled or unreachable): the lease is
			// still ours. Give it back with the call it cost and this
			// failure's own class, rather than leave callers waiting.
			outcome = OutcomeCommitFailed
			t.failed(fmt.Errorf("commit failed: %w", err), 0)
			if supersedes(a, q.kind) {
				// The discarded token ends the published one.
				t.fields.SupersededAt = t.now
			}
		}
		t.log.ErrorContext(t.ctx, "could not commit the new token; it is discarded", "error", err.Error(), "fingerprint", tok.Fingerprint())
		r.observe(t.ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: outcome, CallsToday: calls, Drift: drift, Class: ClassOf(err)})
		return Result{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}
	t.fields = lease.Fields{}
	if unchanged {
		if err := r.Leases.Confirm(t.work, a.Name, gen, t.cur.Version, r.now()); err != nil {
			t.log.WarnContext(t.ctx, "could not record the published version", "error", err.Error(), "version", t.cur.Version)
		}
		r.observe(t.ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeUnchanged, CallsToday: calls, Drift: drift})
		res := t.cur
		res.ExpiresAt = tok.ExpiresAt
		// The same value with a new life (a ticket WeChat extends): the
		// parameter is not rewritten, its schedule is.
		t.announce(t.cur.Version, tok.ExpiresAt)
		return res, nil
	}
	return t.publish(tok, gen, calls, drift)
}

// publish writes the committed token to SSM and confirms its version. When
// SSM refuses, the sealed copy stays in the table for the next holder, and a
// caller is handed the token WeChat issued.
func (t *txn) publish(tok wechat.Token, gen int64, calls int, drift bool) (Result, error) {
	r, a, q := t.r, t.a, t.q
	res := Result{App: a.Name, Token: tok.AccessToken, ExpiresAt: tok.ExpiresAt, Refreshed: true}
	version, err := r.Store.Put(t.work, a.Name, tok.AccessToken)
	if err != nil {
		t.failed(fmt.Errorf("publish failed: %w", err), 0)
		t.log.ErrorContext(t.ctx, "publish to SSM failed; the token is kept sealed for the next attempt", "error", err.Error(), "fingerprint", tok.Fingerprint())
		r.observe(t.ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomePublishFailed, CallsToday: calls, Drift: drift, Class: ClassOf(err)})
		if q.kind != scheduled {
			return res, nil
		}
		return Result{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}
	if err := r.Leases.Confirm(t.work, a.Name, gen, version, r.now()); err != nil {
		t.log.ErrorContext(t.ctx, "could not record the published version", "error", err.Error(), "version", version)
	}
	t.announce(version, tok.ExpiresAt)
	t.log.InfoContext(t.ctx, "token refreshed", "event", "refreshed", "generation", gen, "version", version,
		"fingerprint", tok.Fingerprint(), "expires_at", tok.ExpiresAt, "calls_today", calls)
	r.observe(t.ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeRefreshed, CallsToday: calls, Drift: drift})
	res.Version = version
	return res, nil
}

// announce publishes the schedule of the value SSM holds at version (which
// expires at expiresAt) beside it, for consumers (rotation.Meta). A failure
// is logged and nothing more: consumers that find no meta of that version
// fall back to reading every minute, and the next publish writes it again.
func (t *txn) announce(version int64, expiresAt time.Time) {
	if version == 0 || expiresAt.IsZero() {
		return
	}
	r, a := t.r, t.a
	m := rotation.Meta{Version: version, ExpiresAt: expiresAt, RotatesAt: rotatesAt(r.policy(), a, expiresAt)}
	if err := r.Store.PutMeta(t.work, a.Name, m); err != nil {
		t.log.WarnContext(t.ctx, "could not publish the rotation meta; consumers read every minute until the next publish", "error", err.Error(), "version", version)
	}
}

// reconcile repairs SSM when it disagrees with the committed generation (P4):
// a sealed token that never reached SSM is published, a parameter
// overwritten out of order is put back to the committed token, and a publish
// whose version was not recorded is confirmed. An error means SSM refused
// the sealed token; cur is then that token (Version 0).
func (t *txn) reconcile(cur Result) (Result, error) {
	r, a, st := t.r, t.a, t.st
	switch {
	case !st.HasToken() || !sameAccount(a, st):
		return cur, nil
	case cur.Token != "" && wechat.Fingerprint(cur.Token) == st.Fingerprint:
		if st.Version == 0 {
			if err := r.Leases.Confirm(t.work, a.Name, st.Generation, cur.Version, r.now()); err == nil {
				t.st.Version, t.st.Pending = cur.Version, ""
				// Its meta may have been lost with the record.
				t.announce(cur.Version, st.ExpiresAt)
				t.log.InfoContext(t.ctx, "confirmed an unrecorded publish", "version", cur.Version)
			}
		}
		return cur, nil
	case st.Version == 0:
		return t.publishPending(cur)
	}
	good, err := r.Store.GetVersion(t.work, a.Name, st.Version)
	if err != nil || wechat.Fingerprint(good) != st.Fingerprint {
		t.log.WarnContext(t.ctx, "SSM disagrees with the table and the committed version is unreadable", "version", st.Version)
		return cur, nil
	}
	committed := Result{App: a.Name, Token: good, ExpiresAt: st.ExpiresAt}
	v, err := r.Store.Put(t.work, a.Name, good)
	if err != nil {
		// SSM holds a token other than the committed one and refuses the
		// repair: a caller gets the committed token from here.
		return committed, fmt.Errorf("refresh: %s: repair: %w", a.Name, err)
	}
	committed.Version = v
	t.announce(v, st.ExpiresAt) // SSM holds it, recorded or not
	if err := r.Leases.Confirm(t.work, a.Name, st.Generation, v, r.now()); err != nil {
		return committed, fmt.Errorf("refresh: %s: repair: %w", a.Name, err)
	}
	t.st.Version = v
	t.log.WarnContext(t.ctx, "repaired SSM: it held a token other than the committed one", "event", "repaired",
		"found_fingerprint", wechat.Fingerprint(cur.Token), "committed_fingerprint", st.Fingerprint, "version", v)
	return Result{App: a.Name, Token: good, Version: v, ExpiresAt: st.ExpiresAt}, nil
}

// publishPending publishes the sealed token of a commit whose publish
// failed, instead of fetching another (classic mode: another would end it).
// A seal that cannot be opened (the secret was replaced) or a token that
// has expired is lost: a refresh replaces it.
func (t *txn) publishPending(cur Result) (Result, error) {
	r, a, st := t.r, t.a, t.st
	if st.Pending == "" || !r.now().Before(st.ExpiresAt) {
		return cur, nil
	}
	if err := t.readSecret(); err != nil {
		return cur, nil
	}
	tok, err := unseal(t.secret, a.AppID, a.Name, st.Generation, st.Pending)
	if err != nil {
		t.log.WarnContext(t.ctx, "the sealed token cannot be opened (secret replaced?); it is lost", "generation", st.Generation)
		return cur, nil
	}
	held := Result{App: a.Name, Token: tok, ExpiresAt: st.ExpiresAt}
	v, err := r.Store.Put(t.work, a.Name, tok)
	if err != nil {
		return held, fmt.Errorf("publish the sealed token: %w", err)
	}
	if err := r.Leases.Confirm(t.work, a.Name, st.Generation, v, r.now()); err != nil {
		// SSM holds it all the same; the next holder confirms the version.
		t.log.ErrorContext(t.ctx, "could not record the published version", "error", err.Error(), "version", v)
	}
	t.st.Version, t.st.Pending = v, ""
	t.announce(v, st.ExpiresAt)
	t.log.InfoContext(t.ctx, "published the sealed token of an earlier refresh", "event", "published_pending",
		"generation", st.Generation, "version", v, "fingerprint", wechat.Fingerprint(tok))
	held.Version = v
	return held, nil
}

func (r *Refresher) check(ctx context.Context, a registry.App, token string) error {
	if a.Mode == registry.GetToken {
		return r.WeChat.CheckWeComToken(ctx, token)
	}
	return r.WeChat.CheckToken(ctx, token)
}

func logFailure(ctx context.Context, log *slog.Logger, err error) {
	attrs := []any{"event", "refresh_failed", "class", string(ClassOf(err)), "error", err.Error()}
	var we *wechat.Error
	if errors.As(err, &we) {
		attrs = append(attrs, "errcode", we.Code, "rid", we.RID)
	}
	if ip, ok := wechat.WhitelistIP(err); ok {
		attrs = append(attrs, "whitelist_ip", ip)
	}
	log.ErrorContext(ctx, "refresh failed", attrs...)
}
