package registry

import (
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/ticket"
)

// Ticket is a ticket an app opts into (package ticket names them).
type Ticket = ticket.Ticket

// The tickets (package ticket's, under the names the registry's callers use).
const (
	TicketJSAPI       = ticket.JSAPI
	TicketCard        = ticket.Card
	TicketAgentConfig = ticket.AgentConfig
)

// DefaultTicketBudget bounds an app's WeChat calls for one ticket per
// Beijing day. The schedule needs about 15 (one every TokenLifetime −
// margin); WeCom allows 100 an hour per application.
const DefaultTicketBudget = 100

// ticketsOf lists the tickets each kind of account can have: Mini Programs
// have none.
var ticketsOf = map[Kind][]Ticket{
	OfficialAccount: {TicketJSAPI, TicketCard},
	WeCom:           {TicketJSAPI, TicketAgentConfig},
}

// allTickets is every ticket, in TicketSet bit order.
var allTickets = ticket.All()

// TicketSet is a set of tickets (comparable, so that an App stays so).
type TicketSet uint8

func bit(t Ticket) TicketSet {
	i := slices.Index(allTickets, t)
	if i < 0 {
		return 0
	}
	return 1 << i
}

// TicketSetOf returns the set of ts.
func TicketSetOf(ts ...Ticket) TicketSet {
	var s TicketSet
	for _, t := range ts {
		s |= bit(t)
	}
	return s
}

// Has reports whether t is in the set.
func (s TicketSet) Has(t Ticket) bool { return bit(t) != 0 && s&bit(t) != 0 }

// List returns the tickets of the set, sorted by name.
func (s TicketSet) List() []Ticket {
	var out []Ticket
	for _, t := range allTickets {
		if s.Has(t) {
			out = append(out, t)
		}
	}
	return out
}

// String lists the set as "jsapi,wx_card" ("" when empty).
func (s TicketSet) String() string { return joinTickets(s.List(), ",") }

// ParseTicket returns the ticket named s, or false when wxtoken keeps no
// ticket of that name.
func ParseTicket(s string) (Ticket, bool) { return ticket.Parse(s) }

// TicketsOf returns the tickets an account of kind can have.
func TicketsOf(kind Kind) []Ticket { return slices.Clone(ticketsOf[kind]) }

// HasTicket reports whether the app opted into t.
func (a App) HasTicket(t Ticket) bool { return a.Tickets.Has(t) }

// ParseTickets reads a comma-separated list of tickets ("jsapi,wx_card";
// "" or "none" for none) for an account of kind, or says what is wrong.
func ParseTickets(kind Kind, list string) (TicketSet, error) {
	list = strings.TrimSpace(list)
	if list == "" || list == "none" {
		return 0, nil
	}
	return checkTickets(kind, strings.Split(list, ","))
}

// checkTickets validates names as tickets of kind.
func checkTickets(kind Kind, names []string) (TicketSet, error) {
	allowed := ticketsOf[kind]
	var out TicketSet
	for _, n := range names {
		t := Ticket(strings.TrimSpace(n))
		if !slices.Contains(allowed, t) {
			if len(allowed) == 0 {
				return 0, fmt.Errorf("tickets: %s has no tickets (%q)", kindName(kind), t)
			}
			return 0, fmt.Errorf("tickets: %q is not a ticket of %s: want %s", t, kindName(kind), joinTickets(allowed, ", "))
		}
		out |= bit(t)
	}
	return out, nil
}

func joinTickets(ts []Ticket, sep string) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, sep)
}

// decodeTickets reads the item's tickets attribute (a string set).
func decodeTickets(kind Kind, item map[string]types.AttributeValue) (TicketSet, error) {
	v, ok := item["tickets"]
	if !ok {
		return 0, nil
	}
	ss, ok := v.(*types.AttributeValueMemberSS)
	if !ok {
		return 0, fmt.Errorf(`tickets must be a string set, e.g. {"SS": ["jsapi"]}`)
	}
	return checkTickets(kind, ss.Value)
}

// ticketsAttribute is the tickets attribute of an item (nil for none: a
// DynamoDB string set cannot be empty).
func ticketsAttribute(ts TicketSet) types.AttributeValue {
	list := ts.List()
	if len(list) == 0 {
		return nil
	}
	s := make([]string, len(list))
	for i, t := range list {
		s[i] = string(t)
	}
	return &types.AttributeValueMemberSS{Value: s}
}

// SharedTicket reports whether WeChat issues ticket t to the account of an
// app of kind rather than to one registration: an Official Account's
// tickets and a WeCom corporation's jsapi ticket (an agent_config ticket is
// the application's own).
func SharedTicket(kind Kind, t Ticket) bool {
	return !(kind == WeCom && t == TicketAgentConfig)
}

// TicketConflicts returns the tickets of enabled apps that another enabled
// registration of the same account already has: two fetchers of one
// account-level ticket would end each other's tickets if a new ticket ends
// the old one. The first registration by name keeps the ticket; each other
// one's is an *InvalidError naming it, by credential.
func TicketConflicts(apps []App) map[Credential]error {
	sorted := slices.Clone(apps)
	slices.SortFunc(sorted, func(a, b App) int { return strings.Compare(a.Name, b.Name) })
	type account struct {
		id     string
		wecom  bool
		ticket Ticket
	}
	owner := map[account]string{}
	out := map[Credential]error{}
	for _, a := range sorted {
		if a.Disabled {
			continue
		}
		for _, t := range a.Tickets.List() {
			if !SharedTicket(a.Kind, t) {
				continue
			}
			k := account{id: a.AppID, wecom: a.Kind == WeCom, ticket: t}
			if first, ok := owner[k]; ok {
				out[Credential{App: a.Name, Ticket: t}] = &InvalidError{App: a.Name, Reason: fmt.Sprintf(
					"tickets: %s also registers account %s with the %s ticket, which WeChat issues to the account: one registration only may keep it (remove it from one of them)", first, a.AppID, t)}
				continue
			}
			owner[k] = a.Name
		}
	}
	return out
}

// kindName names a kind of account in messages.
func kindName(k Kind) string {
	switch k {
	case OfficialAccount:
		return "an Official Account (offiaccount)"
	case MiniProgram:
		return "a Mini Program (miniprogram)"
	case WeCom:
		return "a WeCom app (wecom)"
	}
	return fmt.Sprintf("an account of kind %q", k)
}
