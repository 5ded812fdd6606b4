package refresh

import (
	"context"
	"errors"
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
// Scan), the sweep can. The pause is renewed before it lapses while the
// conflict lasts (clearConflict ends it when the conflict is gone), and
// never written over another holder's lease.
func (r *Refresher) markConflict(ctx context.Context, c cred, st lease.State, err error, now time.Time) {
	a := c.rules()
	if st.LastErrorClass == string(ClassInvalid) && st.BlockedUntil.After(now.Add(r.policy().configBlock/2)) {
		return
	}
	r.writeAside(ctx, a.Name, now, failureFields(r.policy(), a, scheduled, err, now, 0))
}

// clearConflict ends the pause markConflict left on a ticket's state once
// the conflict is gone (the registrations were fixed).
func (r *Refresher) clearConflict(ctx context.Context, c cred, st lease.State, now time.Time) {
	if st.LastErrorClass != string(ClassInvalid) || !st.BlockedUntil.After(now) {
		return
	}
	none := ""
	r.writeAside(ctx, c.key(), now, lease.Fields{ClearBlocks: true, LastErrorClass: &none})
}

// writeAside writes f to a credential's state under a lease of its own,
// taken and released at once (no WeChat call), detached from ctx's end so
// that a lease taken is always released. A held lease or an unavailable
// table leaves it for the next run.
func (r *Refresher) writeAside(ctx context.Context, key string, now time.Time, f lease.Fields) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	owner := r.acquisition()
	if _, err := r.Leases.Acquire(ctx, key, owner, now, now.Add(r.leaseDuration())); err != nil {
		if !errors.Is(err, lease.ErrHeld) {
			r.logger().WarnContext(ctx, "could not take the lease to record a ticket conflict", "app", key, "error", err.Error())
		}
		return
	}
	if err := r.Leases.Release(ctx, key, owner, now, f); err != nil {
		r.logger().WarnContext(ctx, "could not record a ticket conflict", "app", key, "error", err.Error())
	}
}
