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
// the current ticket together with the *APIError.
func (c *Client) RefreshTicket(ctx context.Context, t ticket.Ticket, stale string) (string, error) {
	if _, ok := ticket.Parse(string(t)); !ok {
		return "", fmt.Errorf("client: %q is not a ticket wxtoken keeps", t)
	}
	return c.refresh(ctx, c.cache(spec{ticket: t}), stale)
}

// SignURL signs pageURL for the JS-SDK's wx.config with the app's current
// jsapi ticket (an Official Account's, or a WeCom corporation's), a fresh
// nonce and the wall clock. Hand the result, with the appid (WeCom: the
// corpid), to the page.
func (c *Client) SignURL(ctx context.Context, pageURL string) (JSSDKSignature, error) {
	return c.signWith(ctx, ticket.JSAPI, pageURL)
}

// SignAgentConfig signs pageURL for WeCom's wx.agentConfig with the
// application's current agent_config ticket (pass the corpid and agentid to
// the page beside it).
func (c *Client) SignAgentConfig(ctx context.Context, pageURL string) (JSSDKSignature, error) {
	return c.signWith(ctx, ticket.AgentConfig, pageURL)
}

func (c *Client) signWith(ctx context.Context, t ticket.Ticket, pageURL string) (JSSDKSignature, error) {
	tk, err := c.Ticket(ctx, t)
	if err != nil {
		return JSSDKSignature{}, err
	}
	return NewJSSDKSignature(tk, pageURL, time.Now())
}
