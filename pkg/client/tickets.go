package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wxtoken/wxtoken/pkg/ticket"
)

// ErrNoTicket is returned by Ticket when no ticket is published for the app
// and the client has no API endpoint to ask for one.
var ErrNoTicket = errors.New("client: no ticket published for the app")

// Ticket returns the app's current ticket t (ticket.JSAPI, ticket.Card,
// ticket.AgentConfig), cached for at most MaxAge: from SSM
// (`{prefix}/{app}/{t}_ticket`), or from the API when nothing is published.
// Unlike a token's, a ticket's expiry is not guessed from the parameter's
// age (the parameter is not rewritten when WeChat extends the same
// ticket), so were the schedule stuck, an expired ticket would be served
// until a page fails and Resign or RefreshTicket asks the API. The app must
// keep t (wxtoken apps set NAME --tickets ...); otherwise the API answers
// 404 unknown_ticket.
func (c *Client) Ticket(ctx context.Context, t ticket.Ticket) (string, error) {
	if _, ok := ticket.Parse(string(t)); !ok {
		return "", fmt.Errorf("client: %q is not a ticket wxtoken keeps", t)
	}
	return c.get(ctx, c.cache(spec{ticket: t}))
}

// RefreshTicket asks wxtoken for a ticket t to replace stale, the ticket a
// page's wx.config rejected ("" asks for the current ticket). Concurrent
// calls with the same stale ticket share one request; on a 429 it returns
// the current ticket together with the *APIError. Errors: a local one for
// a name that is not a ticket, an *APIError for the API's error answers
// (404 unknown_ticket when the app does not keep t), wrapped transport
// errors otherwise.
func (c *Client) RefreshTicket(ctx context.Context, t ticket.Ticket, stale string) (string, error) {
	if _, ok := ticket.Parse(string(t)); !ok {
		return "", fmt.Errorf("client: %q is not a ticket wxtoken keeps", t)
	}
	return c.refresh(ctx, c.cache(spec{ticket: t}), stale)
}

// SignURL signs pageURL for the JS-SDK's wx.config with the app's current
// jsapi ticket (an Official Account's, or a WeCom corporation's), a fresh
// nonce and the wall clock. Hand the result, with the appid (WeCom: the
// corpid), to the page; when the page reports "invalid signature", call
// Resign with it. Errors are Ticket's: ErrNoTicket, an *APIError (404
// unknown_ticket when the app does not keep a jsapi ticket), or a wrapped
// SSM error.
func (c *Client) SignURL(ctx context.Context, pageURL string) (JSSDKSignature, error) {
	return c.signWith(ctx, ticket.JSAPI, pageURL)
}

// SignAgentConfig signs pageURL for WeCom's wx.agentConfig with the
// application's current agent_config ticket (pass the corpid and agentid to
// the page beside it). Errors are as SignURL's.
func (c *Client) SignAgentConfig(ctx context.Context, pageURL string) (JSSDKSignature, error) {
	return c.signWith(ctx, ticket.AgentConfig, pageURL)
}

func (c *Client) signWith(ctx context.Context, t ticket.Ticket, pageURL string) (JSSDKSignature, error) {
	tk, err := c.Ticket(ctx, t)
	if err != nil {
		return JSSDKSignature{}, err
	}
	return signed(t, tk, pageURL)
}

// signed signs pageURL with tk, a ticket of kind t, remembering both for
// Resign.
func signed(t ticket.Ticket, tk, pageURL string) (JSSDKSignature, error) {
	sig, err := NewJSSDKSignature(tk, pageURL, time.Now())
	if err != nil {
		return JSSDKSignature{}, err
	}
	sig.with = &signedWith{kind: t, ticket: tk}
	return sig, nil
}

// errSameTicket: wxtoken answered a claim with the ticket claimed bad.
var errSameTicket = errors.New("client: wxtoken returned the ticket the page rejected")

// Resign answers a page's report that wx.config rejected a signature with
// "invalid signature" although its URL was right: the ticket it was made
// with is bad. rejected is the value SignURL or SignAgentConfig returned,
// or its fields as the page sent them back (nonceStr, timestamp, signature,
// url; such a value is taken to be wx.config's, the jsapi ticket's). Resign
// finds the ticket it was made with: when that is not the current ticket
// (the cache had not seen a rotation yet), the current one signs the URL
// again without any request; otherwise it asks wxtoken for a ticket to
// replace it (RefreshTicket with it as the stale ticket: when another is
// already published, that one, without a WeChat call) and signs the URL
// with the answer. Ticket caches hold a ticket for up to MaxAge; if WeChat
// ended a ticket as soon as it issued the next (it does not say), a page
// signed in that minute is rejected once, and Resign is the way back.
// It returns a signature or an error, never both: RefreshTicket's errors
// (an *APIError for the API's answers, a 429 included) or an error saying
// wxtoken answered with the rejected ticket itself.
func (c *Client) Resign(ctx context.Context, rejected JSSDKSignature) (JSSDKSignature, error) {
	kind, stale := ticket.JSAPI, ""
	if w := rejected.with; w != nil {
		kind, stale = w.kind, w.ticket
	} else {
		cur, err := c.Ticket(ctx, kind)
		if err != nil {
			return JSSDKSignature{}, err
		}
		if SignJSSDK(cur, rejected.NonceStr, rejected.Timestamp, rejected.URL) != rejected.Signature {
			// Made with another ticket than the current one.
			return signed(kind, cur, rejected.URL)
		}
		stale = cur
	}
	tk, err := c.RefreshTicket(ctx, kind, stale)
	switch {
	case err != nil:
		return JSSDKSignature{}, err
	case tk == stale:
		return JSSDKSignature{}, errSameTicket
	}
	return signed(kind, tk, rejected.URL)
}
