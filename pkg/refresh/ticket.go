package refresh

import (
	"context"
	"fmt"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// fetchTicket asks WeChat for the credential's ticket with the app's access
// token, got through Refresh (the published one, fetched only if missing
// or expired). A ticket call answered 40001, 42001 or 40014 means the
// token is bad, not the ticket: the token is refreshed through the normal
// compare-and-refresh path (Refresh with the token the ticket call used,
// which WeChat checks before anything is rotated), and the ticket is asked
// for once more with the token that answers; a second refusal is this
// attempt's failure, never a loop. Only ticket calls count against the
// ticket's budget; an attempt without a token makes none (noToken).
func (t *txn) fetchTicket() (wechat.Token, error) {
	r, app := t.r, t.c.app.Name
	tok, err := r.Refresh(t.work, app, "")
	if err != nil {
		return wechat.Token{}, t.noToken(err)
	}
	ticket, err := t.callTicket(tok.Token)
	if wechat.IsTokenInvalid(err) {
		t.log.WarnContext(t.ctx, "WeChat rejected the access token on the ticket call; refreshing the token",
			"errcode", ErrCode(err), "token_fingerprint", wechat.Fingerprint(tok.Token))
		fresh, rerr := r.Refresh(t.work, app, tok.Token)
		switch {
		case rerr != nil:
			return wechat.Token{}, t.noToken(rerr)
		case fresh.Token != tok.Token:
			ticket, err = t.callTicket(fresh.Token)
		}
		// Otherwise WeChat accepts the token on a business call (the
		// claim was refused): the ticket call's refusal stands.
	}
	if err != nil {
		t.failed(err, t.secretVersion)
		if supersedes(t.a, t.q.kind) && mayHaveIssued(err) {
			// WeChat may have issued a ticket that ended the published
			// one: the ticket is due until a newer one is committed.
			t.fields.SupersededAt = t.now
		}
		logFailure(t.ctx, t.log, err)
		r.observe(t.ctx, failureEvent(t.a, t.q, err, t.callsMade()))
		return wechat.Token{}, fmt.Errorf("refresh: %s: %w", t.a.Name, err)
	}
	return ticket, nil
}

// callTicket counts a ticket call against the budget (whatever its outcome:
// failed keeps the count), then makes it.
func (t *txn) callTicket(accessToken string) (wechat.Token, error) {
	calls := callsToday(t.st, t.now) + 1
	if t.fields.CallsToday != nil {
		calls = *t.fields.CallsToday + 1
	}
	day := beijingDay(t.now)
	t.fields.CallsDay, t.fields.CallsToday = &day, &calls
	return t.r.ticketCall(t.work, t.c, accessToken)
}

// callsMade is the credential's calls today as this attempt leaves them.
func (t *txn) callsMade() int {
	if t.fields.CallsToday != nil {
		return *t.fields.CallsToday
	}
	return callsToday(t.st, t.now)
}

// noToken records a ticket attempt that could not have the access token
// (err is the token's failure, already recorded on the token and paged by
// its own outcome): the ticket is retried at the next run without a pause
// of its own, is not marked superseded (no ticket call was made, or one
// whose token WeChat rejected), and the error carries no credential.
func (t *txn) noToken(err error) error {
	e := &TokenUnavailableError{App: t.c.app.Name, Ticket: t.c.ticket, TokenClass: ClassOf(err)}
	t.failed(e, 0)
	t.log.WarnContext(t.ctx, "no access token for the ticket call", "event", "refresh_failed",
		"class", string(ClassTokenUnavailable), "token_class", string(e.TokenClass), "errcode", ErrCode(err))
	t.r.observe(t.ctx, failureEvent(t.a, t.q, e, t.callsMade()))
	return fmt.Errorf("refresh: %s: %w", t.a.Name, e)
}

// ticketCall is the WeChat call that issues the credential's ticket.
func (r *Refresher) ticketCall(ctx context.Context, c cred, accessToken string) (wechat.Token, error) {
	switch {
	case c.app.Kind == registry.WeCom && c.ticket == registry.TicketAgentConfig:
		return r.WeChat.WeComAgentTicket(ctx, accessToken)
	case c.app.Kind == registry.WeCom:
		return r.WeChat.WeComJSAPITicket(ctx, accessToken)
	case c.ticket == registry.TicketCard:
		return r.WeChat.Ticket(ctx, accessToken, wechat.TicketCard)
	}
	return r.WeChat.Ticket(ctx, accessToken, wechat.TicketJSAPI)
}
