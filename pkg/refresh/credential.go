package refresh

import (
	"context"
	"fmt"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/registry"
)

// cred is what one lease guards and one parameter publishes: an app's
// access token, or one of its tickets (design: tickets). A ticket is a
// credential of its own: its own lease, state, budget and schedule, so a
// new token never waits for a ticket nor a ticket for a token.
type cred struct {
	app    registry.App
	ticket registry.Ticket // "" for the access token
}

func tokenCred(a registry.App) cred { return cred{app: a} }

// key is the credential's name in the lease table and the token store
// (registry.Credential): the app's name, or "app#ticket".
func (c cred) key() string {
	return registry.Credential{App: c.app.Name, Ticket: c.ticket}.Key()
}

// rules is the registration the pure decisions (due, admit, supersedes,
// failureFields) and the lease and store calls read, named by the key. For
// the token it is the registration itself. A ticket is refreshed
// RefreshMargin before it expires, as a classic token is: WeChat does not
// say whether a new ticket ends the previous one, so a fetch whose answer
// was lost is taken to have ended it (supersedes); its budget is the
// ticket budget.
func (c cred) rules() registry.App {
	if c.ticket == "" {
		return c.app
	}
	a := c.app
	a.Name = c.key()
	a.Mode = registry.Classic
	a.DailyBudget = registry.DefaultTicketBudget
	return a
}

// credsOf lists an app's credentials: its token, then its tickets.
func credsOf(a registry.App) []cred {
	out := []cred{tokenCred(a)}
	for _, t := range a.Tickets.List() {
		out = append(out, cred{app: a, ticket: t})
	}
	return out
}

// credential returns the credential of app (its token for ticket "") as
// registered now: ErrUnknownApp when the app is not registered or is
// disabled, ErrUnknownTicket when it has not (or no longer) the ticket.
func (r *Refresher) credential(ctx context.Context, app string, ticket registry.Ticket) (cred, error) {
	a, err := r.app(ctx, app)
	if err != nil {
		return cred{}, err
	}
	if ticket != "" && !a.HasTicket(ticket) {
		return cred{}, fmt.Errorf("%w: %s has no %s ticket", ErrUnknownTicket, app, ticket)
	}
	return cred{app: a, ticket: ticket}, nil
}

// markConflict records on the state of a ticket WeChat issues to the
// account, which another registration of the account keeps
// (registry.TicketConflicts, err), the failure invalid_registration with its
// pause, so that callers of the API are refused from the state without a
// WeChat call: the API function cannot list the registrations (it has no
// Scan), the sweep can. It writes only when the state does not already
// hold that pause, and never over another holder's lease.
func (r *Refresher) markConflict(ctx context.Context, c cred, st lease.State, err error, now time.Time) {
	a := c.rules()
	if st.LastErrorClass == string(ClassInvalid) && st.BlockedUntil.After(now) {
		return
	}
	owner := r.acquisition()
	if _, aerr := r.Leases.Acquire(ctx, a.Name, owner, now, now.Add(r.leaseDuration())); aerr != nil {
		return // leased or unavailable: the next run tries again
	}
	f := failureFields(r.policy(), a, scheduled, err, now, 0)
	if rerr := r.Leases.Release(ctx, a.Name, owner, now, f); rerr != nil {
		r.logger().WarnContext(ctx, "could not record the ticket's conflict", "app", a.Name, "error", rerr.Error())
	}
}
