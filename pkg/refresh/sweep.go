package refresh

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/registry"
)

// RunStatus is what a scheduled run did for one app.
type RunStatus string

// The statuses of a scheduled run's Outcome.
const (
	StatusRefreshed RunStatus = "refreshed" // a token was fetched (or a sealed one published)
	StatusNotDue    RunStatus = "not_due"   // nothing to do
	StatusBusy      RunStatus = "busy"      // another instance holds the lease
	StatusBlocked   RunStatus = "blocked"   // calls paused after a WeChat error (Err is a *RefusedError with its errcode)
	StatusRefused   RunStatus = "refused"   // the budget refused the call
	StatusFailed    RunStatus = "failed"    // the refresh failed (Err says why)
	StatusInvalid   RunStatus = "invalid"   // the registration (or this ticket of it) is rejected
	StatusDeferred  RunStatus = "deferred"  // the run ran out of time before the app's turn
)

// Outcome is what a scheduled run did for one credential: an app's token
// (App is the app's name) or one of its tickets (App is "app#ticket", the
// credential's key, and Ticket is set).
type Outcome struct {
	App    string
	Ticket registry.Ticket
	Status RunStatus
	Err    error
	Result Result
	// ExpiresAt is when the app's committed token expires, as the run saw
	// it (zero: no token yet).
	ExpiresAt time.Time
}

// Report is a scheduled run's account: one Outcome per credential.
type Report struct {
	// Apps counts the registered apps (valid or not), not their tickets.
	Apps     int
	Outcomes []Outcome
	Elapsed  time.Duration
}

// Count returns the number of outcomes with status.
func (rep Report) Count(status RunStatus) int {
	n := 0
	for _, o := range rep.Outcomes {
		if o.Status == status {
			n++
		}
	}
	return n
}

// job is one credential's work in a scheduled run.
type job struct {
	c  cred
	st lease.State
	// what: refresh a due app, look whether a replaced secret ended its
	// pause, or compare its SSM version with the table.
	what jobKind
}

type jobKind int

const (
	jobDue jobKind = iota
	jobPaused
	jobCheck
)

// RefreshDue refreshes every registered app that is due, Concurrency at a
// time, most urgent first (P10): apps that failed a moment ago go after the
// others, each app's attempt is capped at AttemptTimeout, and one app's
// failure or slowness never stops another's. Apps left when ctx is about to
// end are reported deferred, for the next run. The error is non-nil only
// when the apps could not be listed.
func (r *Refresher) RefreshDue(ctx context.Context) (Report, error) {
	began := time.Now()
	apps, bad, err := r.Apps.List(ctx)
	if err != nil {
		return Report{}, err
	}
	// An account registered under two names is invalid for both.
	apps, dups := registry.Duplicates(apps)
	bad = append(bad, dups...)
	states, err := r.Leases.List(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("refresh: %w", err)
	}
	// By credential key (lease.State.App is the key).
	byApp := make(map[string]lease.State, len(states))
	for _, st := range states {
		byApp[st.App] = st
	}
	rep := Report{Apps: len(apps) + len(bad)}
	// registered holds the keys of the valid apps' credentials; invalid the
	// names of the apps a person must fix, whose every state is kept.
	registered := make(map[string]bool, len(apps)+len(bad))
	invalid := make(map[string]bool, len(bad))
	for _, e := range bad {
		var ie *registry.InvalidError
		name := ""
		if errors.As(e, &ie) {
			name = ie.App
			invalid[name] = true
		}
		rep.Outcomes = append(rep.Outcomes, Outcome{App: name, Status: StatusInvalid, Err: e})
	}
	for _, a := range apps {
		for _, c := range credsOf(a) {
			registered[c.key()] = true
		}
	}
	now := r.now()
	r.cleanup(ctx, states, func(key string) bool {
		return registered[key] || invalid[registry.ParseCredentialKey(key).App]
	}, now)

	// One fetcher per account-level ticket.
	conflicts := registry.TicketConflicts(apps)
	var jobs []job
	for _, app := range apps {
		if app.Disabled {
			continue
		}
		for _, c := range credsOf(app) {
			if err, ok := conflicts[registry.Credential{App: app.Name, Ticket: c.ticket}]; ok {
				r.markConflict(ctx, c, byApp[c.key()], err, now)
				rep.Outcomes = append(rep.Outcomes, c.outcome(StatusInvalid, err))
				continue
			}
			a := c.rules()
			st := byApp[a.Name]
			r.clearConflict(ctx, c, st, now)
			switch {
			case pausedFor(st, scheduled, now) && st.BlockedSecretVersion == 0:
				rep.Outcomes = append(rep.Outcomes, blockedOutcome(c, st, now))
			case pausedFor(st, scheduled, now):
				jobs = append(jobs, job{c: c, st: st, what: jobPaused})
			case st.HasToken() && st.Version > 0 && due(r.policy(), a, st, true, st.ExpiresAt, now) == NotDue:
				// A cheap pre-filter on the listed state; hold decides
				// again under the lease.
				if r.checkTurn(a.Name, now) {
					jobs = append(jobs, job{c: c, st: st, what: jobCheck})
				} else {
					rep.Outcomes = append(rep.Outcomes, c.outcome(StatusNotDue, nil))
				}
			default:
				jobs = append(jobs, job{c: c, st: st, what: jobDue})
			}
		}
	}
	order(jobs, now)
	rep.Outcomes = append(rep.Outcomes, r.work(ctx, jobs)...)
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

// cleanup marks for DynamoDB's TTL the state of removed apps and of tickets
// taken out of a registration: every state whose key keep refuses.
func (r *Refresher) cleanup(ctx context.Context, states []lease.State, keep func(key string) bool, now time.Time) {
	for _, st := range states {
		if !keep(st.App) && st.CleanupAt.IsZero() {
			if err := r.Leases.Expire(ctx, st.App, now, now.Add(DefaultCleanupAfter)); err != nil {
				r.logger().WarnContext(ctx, "could not mark removed app's state for cleanup", "app", st.App, "error", err.Error())
			}
		}
	}
}

func blockedOutcome(c cred, st lease.State, now time.Time) Outcome {
	// Paused after a WeChat error (P6): reported on every run, so that
	// what needs a person keeps saying so.
	return c.outcome(StatusBlocked, &RefusedError{
		App: c.key(), Reason: ReasonBlocked, RetryAfter: st.BlockedUntil.Sub(now), ErrCode: st.LastErrCode, Class: Class(st.LastErrorClass)})
}

// outcome is the credential's Outcome with status and err.
func (c cred) outcome(status RunStatus, err error) Outcome {
	return Outcome{App: c.key(), Ticket: c.ticket, Status: status, Err: err}
}

// recentFailureWindow: an app whose last attempt failed for a transient
// reason within this long goes after the apps that did not.
const recentFailureWindow = 5 * time.Minute

// order sorts the jobs by urgency: due apps first, those that did not fail a
// moment ago before those that did, each group by time to expiry (no token:
// most urgent), ties in random order; then paused apps; then version checks.
func order(jobs []job, now time.Time) {
	rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	failing := func(st lease.State) bool {
		return !st.LastErrorAt.IsZero() && now.Sub(st.LastErrorAt) < recentFailureWindow && Policy(Class(st.LastErrorClass)).Retry
	}
	sort.SliceStable(jobs, func(i, j int) bool {
		a, b := jobs[i], jobs[j]
		if a.what != b.what {
			return a.what < b.what
		}
		if fa, fb := failing(a.st), failing(b.st); fa != fb {
			return !fa
		}
		ea, eb := a.st.ExpiresAt, b.st.ExpiresAt
		if !a.st.HasToken() {
			ea = time.Time{}
		}
		if !b.st.HasToken() {
			eb = time.Time{}
		}
		return ea.Before(eb)
	})
}

// work runs the jobs in order on Concurrency workers.
func (r *Refresher) work(ctx context.Context, jobs []job) []Outcome {
	outcomes := make([]Outcome, len(jobs))
	next := make(chan int)
	p := &pacer{every: time.Second / time.Duration(r.checkRate())}
	var wg sync.WaitGroup
	for w := 0; w < min(r.concurrency(), max(len(jobs), 1)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				outcomes[i] = r.do(ctx, jobs[i], p)
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	return outcomes
}

// do runs one job.
func (r *Refresher) do(ctx context.Context, j job, p *pacer) Outcome {
	c, a := j.c, j.c.rules()
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < MinRunTime {
		// Too little time left for a WeChat call and a publish: leave it
		// to the next run rather than start what cannot finish.
		if j.what == jobCheck {
			return c.outcome(StatusNotDue, nil)
		}
		return c.outcome(StatusDeferred, nil)
	}
	switch j.what {
	case jobCheck:
		// P4: a run that finds SSM and the table disagree repairs SSM.
		if p.wait(ctx) != nil {
			return c.outcome(StatusNotDue, nil)
		}
		v, err := r.Store.Version(ctx, a.Name)
		if err != nil || v == j.st.Version {
			return c.outcome(StatusNotDue, nil)
		}
	case jobPaused:
		if p.wait(ctx) != nil {
			return blockedOutcome(c, j.st, r.now())
		}
		now := r.now()
		if admit(a, j.st, scheduled, now, r.secretVersion(ctx, c.app.Name)) != nil {
			return blockedOutcome(c, j.st, now)
		}
	}
	return r.refreshOne(ctx, c)
}

// refreshOne runs one credential's scheduled refresh, capped at
// AttemptTimeout. (A refresh that starts runs under a context ending at the
// earlier of the deadline and the lease's end, so the lease still cannot
// outlive it.)
func (r *Refresher) refreshOne(ctx context.Context, c cred) Outcome {
	actx, cancel := context.WithTimeout(ctx, r.attemptTimeout())
	defer cancel()
	res, err := r.run(actx, c, request{kind: scheduled})
	var refused *RefusedError
	switch {
	case err == nil:
		o := c.outcome(StatusRefreshed, nil)
		o.Result = res
		return o
	case errors.Is(err, errNotDue):
		return c.outcome(StatusNotDue, nil)
	case errors.Is(err, errBusy):
		return c.outcome(StatusBusy, nil)
	case errors.As(err, &refused) && refused.Reason == ReasonBlocked:
		return c.outcome(StatusBlocked, err)
	case errors.As(err, &refused):
		return c.outcome(StatusRefused, err)
	default:
		return c.outcome(StatusFailed, err)
	}
}

// checkTurn reports whether this is the run that checks the app's SSM
// Version: one in CheckEvery/minute runs, spread by app name.
func (r *Refresher) checkTurn(app string, now time.Time) bool {
	every := int64(orDefault(r.CheckEvery, DefaultCheckEvery) / time.Minute)
	if every < 1 {
		every = 1
	}
	h := int64(0)
	for i := 0; i < len(app); i++ {
		h = (h*31 + int64(app[i])) % every
	}
	return (now.Unix()/60+h)%every == 0
}

// pacer spaces calls at least every apart (real time: it protects SSM's
// throughput), across goroutines.
type pacer struct {
	mu    sync.Mutex
	next  time.Time
	every time.Duration
}

func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	now := time.Now()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(p.every)
	p.mu.Unlock()
	if d := time.Until(at); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
