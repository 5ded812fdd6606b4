package refresh

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

var errBusy = errors.New("refresh: another instance holds the lease")

// errNotDue is hold's answer to a scheduled run that finds the app no longer
// due once it holds the lease.
var errNotDue = errors.New("refresh: not due")

// run takes the lease (or waits for its holder) and refreshes. A caller waits
// as long as its context allows (WaitTimeout when it has no deadline): the
// holder's own work is bounded by the lease.
func (r *Refresher) run(ctx context.Context, c cred, q request) (Result, error) {
	a := c.rules()
	waitCtx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, r.waitTimeout())
		defer cancel()
	}
	started := r.now()
	for {
		now := r.now()
		owner := r.acquisition()
		st, err := r.Leases.Acquire(ctx, a.Name, owner, now, now.Add(r.leaseDuration()))
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
		// The registration was read before the lease: an operator may have
		// removed, disabled or changed the app since (a run lists the apps
		// once; a caller may have waited). Read it again under the lease,
		// so a removed app is never fetched and published again.
		cur, err := r.credential(ctx, c.app.Name, c.ticket)
		if err != nil {
			r.releaseUnused(ctx, a.Name, owner)
			return Result{}, err
		}
		return r.hold(ctx, cur, q, st, owner, now)
	}
}

// releaseUnused gives back a lease taken for nothing, changing no field; a
// failure only delays the next holder until the lease expires.
func (r *Refresher) releaseUnused(ctx context.Context, app, owner string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.Leases.Release(rctx, app, owner, r.now(), lease.Fields{}); err != nil {
		r.logger().WarnContext(ctx, "could not give back an unused lease; it expires by itself", "app", app, "error", err.Error())
	}
}

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
			cur, err := r.current(ctx, a, st)
			if err != nil {
				return Result{}, true, err
			}
			if cur.Token != "" && (q.kind != onDemand || cur.Token != q.stale) {
				cur.Refreshed = true
				r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeCoalesced})
				return cur, true, nil
			}
		}
		if q.kind == onDemand && st.VerifiedFP == wechat.Fingerprint(q.stale) && !st.VerifiedAt.Before(started.Add(-r.policy().verifiedFor)) {
			// The holder asked WeChat: the claimed token is fine.
			cur, err := r.current(ctx, a, st)
			if err == nil {
				r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeCoalesced})
			}
			return cur, true, err
		}
		if !st.LastErrorAt.IsZero() && !st.LastErrorAt.Before(started) && st.Generation == held.Generation {
			r.observe(ctx, Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeWaitFailed, ErrCode: st.LastErrCode, Class: Class(st.LastErrorClass)})
			return Result{}, true, &FailedError{App: a.Name, ErrCode: st.LastErrCode, Class: Class(st.LastErrorClass), Message: st.LastError}
		}
		if !st.Leased(now) {
			return Result{}, false, nil
		}
	}
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
