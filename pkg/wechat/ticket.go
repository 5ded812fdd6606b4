package wechat

import (
	"context"
	"net/http"
	"net/url"
)

// TicketType names a ticket WeChat issues against an access token.
type TicketType string

// The tickets.
const (
	// TicketJSAPI is the JS-SDK's jsapi_ticket: Official Accounts'
	// getticket?type=jsapi, or WeCom's corporation ticket for wx.config
	// (get_jsapi_ticket).
	TicketJSAPI TicketType = "jsapi"
	// TicketCard is an Official Account's card api_ticket
	// (getticket?type=wx_card).
	TicketCard TicketType = "wx_card"
	// TicketAgentConfig is a WeCom application's ticket for wx.agentConfig
	// (ticket/get?type=agent_config).
	TicketAgentConfig TicketType = "agent_config"
)

// The ticket operations, as they appear in errors, logs and metrics.
const (
	OpTicket           = "getticket"        // GET /cgi-bin/ticket/getticket (Official Accounts)
	OpWeComJSAPITicket = "get_jsapi_ticket" // GET qyapi /cgi-bin/get_jsapi_ticket
	OpWeComAgentTicket = "ticket_get"       // GET qyapi /cgi-bin/ticket/get?type=agent_config
)

// Ticket obtains an Official Account's ticket of type typ (TicketJSAPI or
// TicketCard) with a valid access token (GET /cgi-bin/ticket/getticket).
// The ticket is returned as a Token whose AccessToken is the ticket. An
// errcode 40001, 40014 or 42001 means the access token is bad, not the
// ticket (IsTokenInvalid). The access token is in no error or log line.
// A call is retried like a normal-mode stable_token call: WeChat does not
// say whether a new ticket ends the previous one, and a lost answer leaves
// the published ticket as it was either way.
func (c *Client) Ticket(ctx context.Context, accessToken string, typ TicketType) (Token, error) {
	q := url.Values{"access_token": {accessToken}, "type": {string(typ)}}
	return c.fetchCredential(ctx, OpTicket, fieldTicket, c.baseURLs(), true, accessToken, func(base string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, base+"/cgi-bin/ticket/getticket?"+q.Encode(), nil)
	})
}

// WeComJSAPITicket obtains a WeCom corporation's jsapi_ticket for wx.config
// (GET /cgi-bin/get_jsapi_ticket) with an application's access token.
// WeCom allows 400 a corporation and 100 an application per hour. Errors as
// for Ticket.
func (c *Client) WeComJSAPITicket(ctx context.Context, accessToken string) (Token, error) {
	q := url.Values{"access_token": {accessToken}}
	return c.fetchCredential(ctx, OpWeComJSAPITicket, fieldTicket, c.weComBaseURLs(), true, accessToken, func(base string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, base+"/cgi-bin/get_jsapi_ticket?"+q.Encode(), nil)
	})
}

// WeComAgentTicket obtains a WeCom application's ticket for wx.agentConfig
// (GET /cgi-bin/ticket/get?type=agent_config) with its access token.
// Errors as for Ticket.
func (c *Client) WeComAgentTicket(ctx context.Context, accessToken string) (Token, error) {
	q := url.Values{"access_token": {accessToken}, "type": {string(TicketAgentConfig)}}
	return c.fetchCredential(ctx, OpWeComAgentTicket, fieldTicket, c.weComBaseURLs(), true, accessToken, func(base string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, base+"/cgi-bin/ticket/get?"+q.Encode(), nil)
	})
}
