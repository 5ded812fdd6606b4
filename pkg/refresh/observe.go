package refresh

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
)

// Event is one thing the refresher did for a caller or a scheduled run, for
// metrics (Refresher.Observe). It never carries a token or a secret.
type Event struct {
	App     string
	Reason  string // scheduled, on_demand, ensure or force
	Outcome EventOutcome
	// ErrCode is WeChat's errcode behind a failed or refused outcome (0:
	// none or not a WeChat answer); Class is the failure's policy class.
	ErrCode int
	Class   Class
	// CallsToday is the app's WeChat credential calls this Beijing day,
	// set when this event made one.
	CallsToday int
	// Drift reports that WeChat rotated the token behind wxtoken's back (P9).
	Drift bool
	// RetryAfter is set for OutcomeRefused.
	RetryAfter time.Duration
}

// EventOutcome is what happened in an Event (a metric dimension value).
type EventOutcome string

// Outcomes of an Event.
const (
	OutcomeRefreshed     EventOutcome = "refreshed"      // a WeChat call published a new token
	OutcomeUnchanged     EventOutcome = "unchanged"      // WeChat answered with the published token
	OutcomeServed        EventOutcome = "served"         // the published token answered the caller; no lease, no WeChat
	OutcomeCoalesced     EventOutcome = "coalesced"      // another caller's refresh answered this one
	OutcomeClaimRejected EventOutcome = "claim_rejected" // WeChat accepts (or recently accepted) the token a caller claimed invalid (P8)
	OutcomeUnverified    EventOutcome = "unverified"     // WeChat could not tell whether a claimed token is bad; it was kept
	OutcomeRefused       EventOutcome = "refused"        // a budget, an interval or a pause refused the call
	OutcomeFailed        EventOutcome = "failed"         // the WeChat call failed
	OutcomePublishFailed EventOutcome = "publish_failed" // the token could not be written to SSM (it is kept sealed)
	OutcomeCommitFailed  EventOutcome = "commit_failed"  // DynamoDB refused the commit (not fenced); token discarded
	OutcomeFenced        EventOutcome = "fenced"         // the lease ran out before publishing; token discarded
	OutcomeWaitFailed    EventOutcome = "wait_failed"    // the refresh this caller waited for failed
	OutcomeLockTimeout   EventOutcome = "lock_timeout"   // the refresh this caller waited for did not finish in time
)

// Failure reports whether the outcome is a refresh that went wrong (the
// RefreshFailures metric and alarm).
func (e Event) Failure() bool {
	switch e.Outcome {
	case OutcomeFailed, OutcomePublishFailed, OutcomeCommitFailed, OutcomeFenced:
		return true
	}
	return false
}

// Waited reports whether the caller waited on another holder's lease.
func (e Event) Waited() bool {
	switch e.Outcome {
	case OutcomeCoalesced, OutcomeWaitFailed, OutcomeLockTimeout:
		return true
	}
	return false
}

func (r *Refresher) observe(ctx context.Context, ev Event) {
	if r.Observe != nil {
		r.Observe(ctx, ev)
	}
}

// failureEvent builds the event of a failed WeChat call.
func failureEvent(a registry.App, q request, err error, calls int) Event {
	return Event{App: a.Name, Reason: q.kind.String(), Outcome: OutcomeFailed, Class: ClassOf(err), ErrCode: ErrCode(err), CallsToday: calls}
}

// Status is an app's registration and token metadata, for the status route,
// with the same metadata for each of its tickets in Tickets. It never holds
// the token, a ticket or the secret.
type Status struct {
	App string
	// Ticket is set in the Status of a ticket (an element of Tickets).
	Ticket   registry.Ticket
	AppID    string
	Kind     string
	Mode     string
	Disabled bool
	// Version is the SSM parameter's current version (0: never
	// published); Published reports that it is the version the table
	// committed, i.e. that SSM holds the token described here.
	Version   int64
	Published bool
	// Generation counts committed tokens; Fingerprint identifies the
	// committed one (a short hash, never the token).
	Generation  int64
	Fingerprint string
	FetchedAt   time.Time
	ExpiresAt   time.Time
	// CallsToday of DailyBudget WeChat credential calls were used on the
	// Beijing day CallsDay.
	CallsToday  int
	CallsDay    string
	DailyBudget int
	LastError   string
	LastErrCode int
	ErrorClass  string
	LastErrorAt time.Time
	// BlockedUntil: normal-mode calls pause until then after a quota or
	// configuration error; ForceBlockedUntil: forced calls (the
	// force_refresh limit).
	BlockedUntil      time.Time
	ForceBlockedUntil time.Time
	LastOnDemandAt    time.Time
	DriftCount        int
	LastDriftAt       time.Time
	// LeaseUntil is set while a refresh holds the lease.
	LeaseUntil time.Time
	// Tickets are the app's tickets' metadata, by ticket name.
	Tickets []Status
}

// Status returns app's registration and metadata. It returns ErrUnknownApp
// for an app that is not registered (a disabled app is reported, with
// Disabled set) and wrapped SDK errors otherwise.
func (r *Refresher) Status(ctx context.Context, app string) (Status, error) {
	a, err := r.Apps.Get(ctx, app)
	if errors.Is(err, registry.ErrNotFound) {
		return Status{}, fmt.Errorf("%w: %s", ErrUnknownApp, app)
	}
	if err != nil {
		return Status{}, fmt.Errorf("refresh: %s: %w", app, err)
	}
	cs := credsOf(a)
	s, err := r.statusOf(ctx, cs[0])
	if err != nil {
		return Status{}, err
	}
	for _, c := range cs[1:] {
		ts, err := r.statusOf(ctx, c)
		if err != nil {
			return Status{}, err
		}
		s.Tickets = append(s.Tickets, ts)
	}
	return s, nil
}

// statusOf is one credential's Status.
func (r *Refresher) statusOf(ctx context.Context, c cred) (Status, error) {
	a := c.rules()
	st, err := r.Leases.Get(ctx, a.Name)
	if err != nil {
		return Status{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}
	v, err := r.Store.Version(ctx, a.Name)
	if errors.Is(err, tokenstore.ErrNotFound) {
		v, err = 0, nil
	}
	if err != nil {
		return Status{}, fmt.Errorf("refresh: %s: %w", a.Name, err)
	}
	s := Status{
		App: c.app.Name, Ticket: c.ticket, AppID: a.AppID, Kind: string(a.Kind), Mode: string(a.Mode), Disabled: a.Disabled,
		Version: v, Published: v > 0 && st.HasToken() && st.Version == v,
		Generation: st.Generation, Fingerprint: st.Fingerprint, FetchedAt: st.FetchedAt, ExpiresAt: st.ExpiresAt,
		DailyBudget: a.DailyBudget,
		LastError:   st.LastError, LastErrCode: st.LastErrCode, ErrorClass: st.LastErrorClass, LastErrorAt: st.LastErrorAt,
		BlockedUntil: st.BlockedUntil, ForceBlockedUntil: st.ForceBlockedUntil, LastOnDemandAt: st.LastOnDemandAt, DriftCount: st.DriftCount, LastDriftAt: st.LastDriftAt,
	}
	if c.ticket != "" {
		s.Mode = "" // a ticket has no credential API mode
	}
	now := r.now()
	if st.CallsDay == beijingDay(now) {
		s.CallsToday, s.CallsDay = st.CallsToday, st.CallsDay
	} else {
		s.CallsDay = beijingDay(now)
	}
	if st.Leased(now) {
		s.LeaseUntil = st.LeaseUntil
	}
	if !s.BlockedUntil.After(now) {
		s.BlockedUntil = time.Time{}
	}
	if !s.ForceBlockedUntil.After(now) {
		s.ForceBlockedUntil = time.Time{}
	}
	return s, nil
}
