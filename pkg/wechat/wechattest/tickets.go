package wechattest

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
)

// The ticket paths.
const (
	// PathTicket is an Official Account's getticket (type jsapi or
	// wx_card).
	PathTicket = "/cgi-bin/ticket/getticket"
	// PathWeComJSAPITicket is a WeCom corporation's jsapi_ticket (for
	// wx.config).
	PathWeComJSAPITicket = "/cgi-bin/get_jsapi_ticket"
	// PathWeComAgentTicket is a WeCom application's ticket (type
	// agent_config, for wx.agentConfig).
	PathWeComAgentTicket = "/cgi-bin/ticket/get"
)

// TicketType is a kind of ticket the sandbox issues.
type TicketType string

// The tickets.
const (
	TicketJSAPI       TicketType = "jsapi"        // Official Account jsapi_ticket
	TicketCard        TicketType = "wx_card"      // Official Account card api_ticket
	TicketWeComJSAPI  TicketType = "wecom_jsapi"  // WeCom corporation jsapi_ticket
	TicketAgentConfig TicketType = "agent_config" // WeCom application ticket
)

// TicketRotation is what a repeated ticket call does, which WeChat does not
// document; tests run wxtoken under each.
type TicketRotation int

// The rotations.
const (
	// TicketSame answers the ticket still valid, its life extended to a
	// full TicketLifetime (what integrators report: the same ticket, with
	// expires_in 7200, the old one valid).
	TicketSame TicketRotation = iota
	// TicketNewKeepsOld issues a new ticket on every call; earlier ones
	// live out their life.
	TicketNewKeepsOld
	// TicketNewEndsOld issues a new ticket on every call; the previous one
	// stays valid for Config.TicketGrace (zero: it ends at once) and any
	// older one is invalid.
	TicketNewEndsOld
)

// ticketRec is an issued ticket.
type ticketRec struct {
	ticket    string
	appID     string
	typ       TicketType
	issuedAt  time.Time
	expiresAt time.Time
	endsAt    time.Time // zero: never ended early
}

func (r *ticketRec) validAt(t time.Time) bool {
	return t.Before(r.expiresAt) && (r.endsAt.IsZero() || t.Before(r.endsAt))
}

// ticketCounts are an app's ticket call counts for the limits.
type ticketCounts struct {
	day   string // Beijing date of daily
	daily map[TicketType]int
	hour  int64 // Unix hour of hourly
	// hourly counts WeCom ticket calls of the hour, both types together.
	hourly int
	// recent are the times of the WeCom ticket calls of the last 60
	// minutes (TicketWindowRolling).
	recent []time.Time
}

// TicketWindow is how the sandbox counts WeCom's hourly ticket limits.
type TicketWindow int

// The windows.
const (
	// TicketWindowClockHour counts per clock hour: the count starts again
	// when the hour turns.
	TicketWindowClockHour TicketWindow = iota
	// TicketWindowRolling counts the calls of the last 60 minutes.
	TicketWindowRolling
)

// serveTicket is GET /cgi-bin/ticket/getticket?access_token=...&type=...
// (Official Accounts; Mini Programs have no tickets).
func (s *Sandbox) serveTicket(w http.ResponseWriter, r *http.Request) {
	var typ TicketType
	switch TicketType(r.URL.Query().Get("type")) {
	case TicketJSAPI:
		typ = TicketJSAPI
	case TicketCard:
		typ = TicketCard
	default:
		s.serveTicketOf(w, r, "", false)
		return
	}
	s.serveTicketOf(w, r, typ, false)
}

// serveWeComTicket is WeCom's GET /cgi-bin/get_jsapi_ticket and GET
// /cgi-bin/ticket/get?type=agent_config.
func (s *Sandbox) serveWeComTicket(w http.ResponseWriter, r *http.Request) {
	typ := TicketWeComJSAPI
	if r.URL.Path == PathWeComAgentTicket {
		typ = ""
		if TicketType(r.URL.Query().Get("type")) == TicketAgentConfig {
			typ = TicketAgentConfig
		}
	}
	s.serveTicketOf(w, r, typ, true)
}

// serveTicketOf answers a ticket call of type typ ("" for an unknown type)
// with the access token in the query: the token must be a valid one of an
// account of the right kind, then the limits apply, then the rotation.
func (s *Sandbox) serveTicketOf(w http.ResponseWriter, r *http.Request, typ TicketType, wecom bool) {
	if r.Method != http.MethodGet {
		writeErr(w, 43001, "require GET method")
		return
	}
	token := r.URL.Query().Get("access_token")
	if !s.acceptToken(w, token) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.tokens[token]
	st, ok := s.apps[rec.appID]
	switch {
	case !ok || (st.app.Kind == WeCom) != wecom:
		// A token of the other platform is no credential here.
		writeErr(w, 40014, "invalid access_token")
		return
	case st.app.Kind == MiniProgram:
		// Mini Programs have no JS-SDK or card tickets.
		writeErr(w, 48001, "api unauthorized")
		return
	case typ == "":
		writeErr(w, 40097, "invalid args")
		return
	}
	if st.ticketRequests == nil {
		st.ticketRequests = map[TicketType]int{}
	}
	st.ticketRequests[typ]++
	now := s.Now()
	if code, msg := s.ticketLimitLocked(st, typ, now); code != 0 {
		writeErr(w, code, msg)
		return
	}
	t := s.issueTicketLocked(st, typ, now)
	writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok", "ticket": t.ticket,
		"expires_in": int64(math.Ceil(t.expiresAt.Sub(now).Seconds()))})
}

// ticketLimitLocked counts a ticket call against the limits: WeCom's 400 an
// hour per corporation and 100 per application (the sandbox has one
// application per corporation, so the lower applies), and the configured
// daily limit of an Official Account's tickets. WeCom's page does not say
// whether its two tickets share the hourly count; the sandbox counts them
// together (the stricter reading), per clock hour or over the last 60
// minutes (Config.WeComTicketWindow). Refused calls are not counted. It
// returns the errcode of a refusal, or 0.
func (s *Sandbox) ticketLimitLocked(st *appState, typ TicketType, now time.Time) (int, string) {
	c := &st.ticketCounts
	if day := now.In(beijing).Format(time.DateOnly); day != c.day || c.daily == nil {
		c.day, c.daily = day, map[TicketType]int{}
	}
	if hour := now.Unix() / 3600; hour != c.hour {
		c.hour, c.hourly = hour, 0
	}
	if st.app.Kind == WeCom {
		limit := min(s.cfg.WeComTicketHourlyPerCorp, s.cfg.WeComTicketHourlyPerApp)
		if s.cfg.WeComTicketWindow == TicketWindowRolling {
			c.recent = slices.DeleteFunc(c.recent, func(t time.Time) bool { return !now.Before(t.Add(time.Hour)) })
			if len(c.recent) >= limit {
				return 45009, "api freq out of limit"
			}
			c.recent = append(c.recent, now)
			return 0, ""
		}
		if c.hourly >= limit {
			return 45009, "api freq out of limit"
		}
		c.hourly++
		return 0, ""
	}
	if c.daily[typ] >= s.cfg.TicketDailyQuota {
		return 45009, "reach max api daily quota limit"
	}
	c.daily[typ]++
	return 0, ""
}

// issueTicketLocked answers a ticket of typ by the configured rotation.
func (s *Sandbox) issueTicketLocked(st *appState, typ TicketType, now time.Time) *ticketRec {
	if st.tickets == nil {
		st.tickets = map[TicketType]*ticketRec{}
	}
	cur := st.tickets[typ]
	if s.cfg.TicketRotation == TicketSame && cur != nil && cur.validAt(now) {
		cur.expiresAt = now.Add(s.cfg.TicketLifetime)
		return cur
	}
	if s.cfg.TicketRotation == TicketNewEndsOld {
		for _, t := range s.ticketList {
			if t.appID == st.app.AppID && t.typ == typ && t.validAt(now) {
				end := now
				if t == cur {
					end = now.Add(s.cfg.TicketGrace)
				}
				if t.endsAt.IsZero() || end.Before(t.endsAt) {
					t.endsAt = end
				}
			}
		}
	}
	t := &ticketRec{ticket: newToken(s.cfg.TicketLength), appID: st.app.AppID, typ: typ, issuedAt: now, expiresAt: now.Add(s.cfg.TicketLifetime)}
	leakscan.Record(leakscan.Token, t.ticket)
	st.tickets[typ] = t
	s.ticketList = append(s.ticketList, t)
	st.ticketsIssued++
	return t
}

// CheckTicket answers whether ticket would pass a JS-SDK signature check
// right now (what a WeChat client does with wx.config): 0 when it is a
// valid ticket of appID of type typ, else an errcode (40014 never issued
// or of another app or type, 42001 expired, 40001 ended by a newer one).
// WeChat has no such API; tests and make dev use it.
func (s *Sandbox) CheckTicket(appID string, typ TicketType, ticket string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	for _, t := range s.ticketList {
		if t.ticket != ticket {
			continue
		}
		switch {
		case t.appID != appID || t.typ != typ:
			return 40014
		case !now.Before(t.expiresAt):
			return 42001
		case !t.validAt(now):
			return 40001
		}
		return 0
	}
	return 40014
}

// TicketsIssued returns how many tickets the sandbox issued for appID, of
// every type.
func (s *Sandbox) TicketsIssued(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.apps[appID]; ok {
		return a.ticketsIssued
	}
	return 0
}

// TicketRequests returns how many calls for a ticket of type typ the
// sandbox answered for a valid access token of appID (refused by a limit
// or not); TicketCalls counts every call on the ticket paths.
func (s *Sandbox) TicketRequests(appID string, typ TicketType) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.apps[appID]; ok {
		return a.ticketRequests[typ]
	}
	return 0
}

// TicketCalls returns how many ticket calls reached the sandbox about
// appID, every ticket path together.
func (s *Sandbox) TicketCalls(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[PathTicket][appID] + s.calls[PathWeComJSAPITicket][appID] + s.calls[PathWeComAgentTicket][appID]
}

// String names a rotation for test names and flags.
func (r TicketRotation) String() string {
	switch r {
	case TicketSame:
		return "same"
	case TicketNewKeepsOld:
		return "new-keeps-old"
	case TicketNewEndsOld:
		return "new-ends-old"
	}
	return fmt.Sprintf("rotation(%d)", int(r))
}
