package client

import (
	"context"
	"errors"

	"github.com/wxtoken/wxtoken/pkg/ticket"
)

// Source is what business code needs of wxtoken for an app's access token:
// the current token, and a replacement for one WeChat rejected. *Client
// implements it; depend on Source and fake it in your own tests (in the
// spirit of oauth2's TokenSource).
type Source interface {
	// Token returns the current token.
	Token(ctx context.Context) (string, error)
	// Refresh returns a token to replace stale, the token WeChat rejected
	// ("" asks for the current one).
	Refresh(ctx context.Context, stale string) (string, error)
}

// TicketSource is Source for an app's tickets (ticket.JSAPI, ticket.Card,
// ticket.AgentConfig). *Client implements it.
type TicketSource interface {
	// Ticket returns the current ticket t.
	Ticket(ctx context.Context, t ticket.Ticket) (string, error)
	// RefreshTicket returns a ticket t to replace stale, the ticket a page
	// rejected ("" asks for the current one).
	RefreshTicket(ctx context.Context, t ticket.Ticket, stale string) (string, error)
}

var (
	_ Source       = (*Client)(nil)
	_ TicketSource = (*Client)(nil)
)

// Do runs fn with src's current token. When fn's error carries a
// token-invalid errcode (an error in its chain has an ErrCode() int
// method, as *wechat.Error has; see TokenInvalid), Do asks src once for a
// token to replace the failing one and runs fn once more with it. It
// returns fn's error, or the refresh error joined with it. A Refresh that
// answers a usable token together with an error (a 429: wxtoken keeps the
// token but will not refresh it now) still retries with that token.
func Do(ctx context.Context, src Source, fn func(ctx context.Context, token string) error) error {
	tok, err := src.Token(ctx)
	if err != nil {
		return err
	}
	err = fn(ctx, tok)
	var ec errCoder
	if err == nil || !errors.As(err, &ec) || !TokenInvalid(ec.ErrCode()) {
		return err
	}
	fresh, rerr := src.Refresh(ctx, tok)
	if fresh == "" || fresh == tok {
		if rerr == nil {
			rerr = errors.New("client: wxtoken returned the same token")
		}
		return errors.Join(err, rerr)
	}
	return fn(ctx, fresh)
}
