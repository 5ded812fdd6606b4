// Package ticket names the tickets wxtoken keeps beside an app's access
// token — WeChat's JS-SDK jsapi_ticket, an Official Account's card
// api_ticket and a WeCom application's agent_config ticket — and where each
// is published. It has no dependencies, so that consumers (pkg/client) and
// the service (pkg/registry, pkg/refresh, pkg/api) share one spelling.
package ticket

import "slices"

// Ticket is a ticket an app opts into: a credential WeChat issues against
// the app's access token.
type Ticket string

// The tickets.
const (
	// JSAPI is the JS-SDK ticket: an Official Account's jsapi_ticket
	// (getticket?type=jsapi), or a WeCom corporation's jsapi_ticket for
	// wx.config (get_jsapi_ticket).
	JSAPI Ticket = "jsapi"
	// Card is an Official Account's card api_ticket (getticket?type=wx_card).
	Card Ticket = "wx_card"
	// AgentConfig is a WeCom application's ticket for wx.agentConfig
	// (ticket/get?type=agent_config).
	AgentConfig Ticket = "agent_config"
)

// all is every ticket, in a fixed order (pkg/registry's TicketSet bits).
var all = []Ticket{AgentConfig, JSAPI, Card}

// All returns every ticket, in a fixed order.
func All() []Ticket { return slices.Clone(all) }

// Parse returns the ticket named s, or false when wxtoken keeps no ticket
// of that name.
func Parse(s string) (Ticket, bool) {
	t := Ticket(s)
	return t, slices.Contains(all, t)
}

// ParameterLeaf is the last element of the ticket's SSM parameter,
// {prefix}/{app}/{leaf}: jsapi_ticket, wx_card_ticket, agent_config_ticket.
func (t Ticket) ParameterLeaf() string { return string(t) + "_ticket" }
