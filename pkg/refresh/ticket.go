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
// attempt's failure, never a loop. The retry counts against the ticket's
// budget like the first call.
func (t *txn) fetchTicket() (wechat.Token, error) {
	r, app := t.r, t.c.app.Name
	tok, err := r.Refresh(t.work, app, "")
	if err != nil {
		return wechat.Token{}, fmt.Errorf("the access token for the %s ticket: %w", t.c.ticket, err)
	}
	ticket, err := r.ticketCall(t.work, t.c, tok.Token)
	if !wechat.IsTokenInvalid(err) {
		return ticket, err
	}
	t.log.WarnContext(t.ctx, "WeChat rejected the access token on the ticket call; refreshing the token",
		"errcode", ErrCode(err), "token_fingerprint", wechat.Fingerprint(tok.Token))
	fresh, rerr := r.Refresh(t.work, app, tok.Token)
	if rerr != nil {
		return wechat.Token{}, fmt.Errorf("refresh the access token the %s ticket call rejected: %w", t.c.ticket, rerr)
	}
	if fresh.Token == tok.Token {
		// WeChat accepts the token on a business call (the claim was
		// refused): the ticket call's refusal stands.
		return wechat.Token{}, err
	}
	if t.fields.CallsToday != nil {
		calls := *t.fields.CallsToday + 1
		t.fields.CallsToday = &calls
	}
	return r.ticketCall(t.work, t.c, fresh.Token)
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
