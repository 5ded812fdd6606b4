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
// ticket.AgentConfig), cached like the token: from SSM
// (`{prefix}/{app}/{t}_ticket`), or from the API when nothing is published
// or the published ticket has expired. The app must keep t (wxtoken apps
// set NAME --tickets ...); otherwise the API answers 404 unknown_ticket.
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
	sig.kind, sig.ticket = t, tk
	return sig, err
}

// ErrNotSigned is returned by Resign for a signature this package's Client
// did not make (it does not know the ticket it was made with).
var ErrNotSigned = errors.New("client: the signature was not made by Client.SignURL or SignAgentConfig")

// Resign answers a page's report that wx.config (or wx.agentConfig)
// rejected rejected with "invalid signature" although its URL was right:
// the ticket it was made with is bad. It asks wxtoken for a ticket to
// replace that one (RefreshTicket with it as the stale ticket: when another
// ticket is already published, as after a rotation the cache has not seen
// yet, the answer is that one, without a WeChat call) and signs the same
// URL again. Ticket caches hold a ticket for up to MaxAge; if WeChat ended
// a ticket as soon as it issued the next (it does not say), a page signed
// in that minute is rejected once, and Resign is the way back. Errors are
// ErrNotSigned, or RefreshTicket's (an *APIError for the API's answer).
func (c *Client) Resign(ctx context.Context, rejected JSSDKSignature) (JSSDKSignature, error) {
	if rejected.ticket == "" {
		return JSSDKSignature{}, ErrNotSigned
	}
	tk, err := c.RefreshTicket(ctx, rejected.kind, rejected.ticket)
	if tk == "" {
		return JSSDKSignature{}, err
	}
	// A 429 carries the current ticket with the *APIError: sign with it.
	sig, serr := signed(rejected.kind, tk, rejected.URL)
	return sig, errors.Join(serr, err)
}
