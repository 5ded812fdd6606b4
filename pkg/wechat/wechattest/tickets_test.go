package wechattest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// ticketCall asks for a ticket of typ with token, on the path the type
// uses.
func ticketCall(t *testing.T, s *wechattest.Server, typ wechattest.TicketType, token string) answer {
	t.Helper()
	switch typ {
	case wechattest.TicketWeComJSAPI:
		return do(t, http.MethodGet, s.URL+wechattest.PathWeComJSAPITicket+"?access_token="+url.QueryEscape(token), "")
	case wechattest.TicketAgentConfig:
		return do(t, http.MethodGet, s.URL+wechattest.PathWeComAgentTicket+"?"+url.Values{"access_token": {token}, "type": {string(typ)}}.Encode(), "")
	}
	return do(t, http.MethodGet, s.URL+wechattest.PathTicket+"?"+url.Values{"access_token": {token}, "type": {string(typ)}}.Encode(), "")
}

func mustTicket(t *testing.T, a answer) string {
	t.Helper()
	if a.ErrCode != 0 || a.Ticket == "" || a.ExpiresIn <= 0 {
		t.Fatalf("want a ticket, got errcode %d %q (expires_in %d)", a.ErrCode, a.ErrMsg, a.ExpiresIn)
	}
	return a.Ticket
}

// TestTicketNeedsAValidToken: a ticket call answers for its access token as
// a business call would, and for a token of the wrong platform or kind.
func TestTicketNeedsAValidToken(t *testing.T) {
	s := start(t, wechattest.Config{})
	oa := mustToken(t, stable(t, s, oaID, oaSecret, false))
	ww := mustToken(t, wecom(t, s, wwID, wwSecret))
	mp := mustToken(t, stable(t, s, mpID, mpSecret, false))
	old := mustToken(t, classic(t, s, oaID, oaSecret))
	mustToken(t, classic(t, s, oaID, oaSecret))
	mustToken(t, classic(t, s, oaID, oaSecret)) // old is now superseded past any grace

	tests := []struct {
		name  string
		typ   wechattest.TicketType
		token string
		want  int
	}{
		{"jsapi", wechattest.TicketJSAPI, oa, 0},
		{"wx_card", wechattest.TicketCard, oa, 0},
		{"WeCom jsapi", wechattest.TicketWeComJSAPI, ww, 0},
		{"WeCom agent_config", wechattest.TicketAgentConfig, ww, 0},
		{"no token", wechattest.TicketJSAPI, "", 41001},
		{"a token never issued", wechattest.TicketJSAPI, "not-a-token", 40014},
		{"a superseded token", wechattest.TicketJSAPI, old, 40001},
		{"a WeCom token for an Official Account ticket", wechattest.TicketJSAPI, ww, 40014},
		{"an Official Account token for a WeCom ticket", wechattest.TicketWeComJSAPI, oa, 40014},
		{"a Mini Program", wechattest.TicketJSAPI, mp, 48001},
		{"an unknown type", "bogus", oa, 40097},
	}
	for _, tt := range tests {
		wantCode(t, tt.name, ticketCall(t, s, tt.typ, tt.token).ErrCode, tt.want)
	}
	wantCode(t, "an unknown WeCom ticket type", do(t, http.MethodGet, s.URL+wechattest.PathWeComAgentTicket+"?access_token="+url.QueryEscape(ww)+"&type=bogus", "").ErrCode, 40097)
	wantCode(t, "POST", do(t, http.MethodPost, s.URL+wechattest.PathTicket+"?access_token="+url.QueryEscape(oa)+"&type=jsapi", "").ErrCode, 43001)

	s.Clock().Advance(7201 * time.Second)
	wantCode(t, "an expired token", ticketCall(t, s, wechattest.TicketJSAPI, oa).ErrCode, 42001)
}

// TestTicketRotation: what a repeated ticket call does under each option,
// and that a ticket lives TicketLifetime.
func TestTicketRotation(t *testing.T) {
	tests := []struct {
		rotation wechattest.TicketRotation
		grace    time.Duration
		same     bool
		// firstAfter is CheckTicket of the first ticket right after the
		// second call; firstLater 61 s later.
		firstAfter, firstLater int
	}{
		{wechattest.TicketSame, 0, true, 0, 0},
		{wechattest.TicketNewKeepsOld, 0, false, 0, 0},
		{wechattest.TicketNewEndsOld, 0, false, 40001, 40001},
		{wechattest.TicketNewEndsOld, time.Minute, false, 0, 40001},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s grace %s", tt.rotation, tt.grace), func(t *testing.T) {
			s := start(t, wechattest.Config{TicketRotation: tt.rotation, TicketGrace: tt.grace})
			oa := mustToken(t, stable(t, s, oaID, oaSecret, false))
			a := ticketCall(t, s, wechattest.TicketJSAPI, oa)
			first := mustTicket(t, a)
			if a.ExpiresIn != 7200 {
				t.Errorf("expires_in %d, want 7200", a.ExpiresIn)
			}
			s.Clock().Advance(10 * time.Minute)
			second := mustTicket(t, ticketCall(t, s, wechattest.TicketJSAPI, oa))
			if (first == second) != tt.same {
				t.Errorf("second call answered the same ticket: %v, want %v", first == second, tt.same)
			}
			wantCode(t, "the first ticket after the second call", s.CheckTicket(oaID, wechattest.TicketJSAPI, first), tt.firstAfter)
			wantCode(t, "the second ticket", s.CheckTicket(oaID, wechattest.TicketJSAPI, second), 0)
			s.Clock().Advance(61 * time.Second)
			wantCode(t, "the first ticket 61 s later", s.CheckTicket(oaID, wechattest.TicketJSAPI, first), tt.firstLater)
			wantCode(t, "the ticket as another type", s.CheckTicket(oaID, wechattest.TicketCard, second), 40014)
			wantCode(t, "the ticket of another app", s.CheckTicket(mpID, wechattest.TicketJSAPI, second), 40014)
			s.Clock().Advance(7200 * time.Second)
			wantCode(t, "the second ticket past its life", s.CheckTicket(oaID, wechattest.TicketJSAPI, second), 42001)
			wantCode(t, "a ticket never issued", s.CheckTicket(oaID, wechattest.TicketJSAPI, "nope"), 40014)
			if n := s.TicketCalls(oaID); n != 2 {
				t.Errorf("TicketCalls = %d, want 2", n)
			}
			if n := s.TicketRequests(oaID, wechattest.TicketJSAPI); n != 2 || s.TicketRequests(oaID, wechattest.TicketCard) != 0 {
				t.Errorf("TicketRequests(jsapi) = %d, want 2 and none for wx_card", n)
			}
		})
	}
}

// TestTicketLimits: an Official Account's daily limit per type, and WeCom's
// hourly limit per application (both ticket types together), each reset
// with its period.
func TestTicketLimits(t *testing.T) {
	// 2026-11-21 10:00 UTC is 18:00 in Beijing.
	s := start(t, wechattest.Config{TicketDailyQuota: 2, WeComTicketHourlyPerApp: 3})
	oa := mustToken(t, stable(t, s, oaID, oaSecret, false))
	ww := mustToken(t, wecom(t, s, wwID, wwSecret))
	for i := 0; i < 2; i++ {
		mustTicket(t, ticketCall(t, s, wechattest.TicketJSAPI, oa))
	}
	wantCode(t, "3rd jsapi ticket of the day (limit 2)", ticketCall(t, s, wechattest.TicketJSAPI, oa).ErrCode, 45009)
	mustTicket(t, ticketCall(t, s, wechattest.TicketCard, oa)) // per type

	mustTicket(t, ticketCall(t, s, wechattest.TicketWeComJSAPI, ww))
	mustTicket(t, ticketCall(t, s, wechattest.TicketAgentConfig, ww))
	mustTicket(t, ticketCall(t, s, wechattest.TicketWeComJSAPI, ww))
	wantCode(t, "4th WeCom ticket of the hour (limit 3)", ticketCall(t, s, wechattest.TicketAgentConfig, ww).ErrCode, 45009)

	s.Clock().Advance(time.Hour)
	ww = mustToken(t, wecom(t, s, wwID, wwSecret))
	mustTicket(t, ticketCall(t, s, wechattest.TicketAgentConfig, ww))
	wantCode(t, "the Official Account's limit holds until Beijing midnight", ticketCall(t, s, wechattest.TicketJSAPI, oa).ErrCode, 45009)
	s.Clock().Advance(5 * time.Hour) // 00:00 in Beijing
	oa = mustToken(t, stable(t, s, oaID, oaSecret, false))
	mustTicket(t, ticketCall(t, s, wechattest.TicketJSAPI, oa))

	// Faults apply to ticket paths by the token's account.
	s.Inject(wechattest.Fault{Path: wechattest.PathTicket, AppID: oaID, ErrCode: -1, Times: 1})
	wantCode(t, "a fault on the ticket path", ticketCall(t, s, wechattest.TicketCard, oa).ErrCode, -1)
	mustTicket(t, ticketCall(t, s, wechattest.TicketCard, oa))
}

// TestWeComTicketRollingWindow: under TicketWindowRolling WeCom's hourly
// limit counts the calls of the last 60 minutes, so the turn of the clock
// hour frees nothing; each call frees its place 60 minutes after it.
func TestWeComTicketRollingWindow(t *testing.T) {
	s := start(t, wechattest.Config{WeComTicketHourlyPerApp: 2, WeComTicketWindow: wechattest.TicketWindowRolling})
	s.Clock().Advance(30 * time.Minute) // 10:30 UTC
	ww := mustToken(t, wecom(t, s, wwID, wwSecret))
	first := s.Now()
	mustTicket(t, ticketCall(t, s, wechattest.TicketWeComJSAPI, ww))
	s.Clock().Advance(20 * time.Minute) // 10:50
	mustTicket(t, ticketCall(t, s, wechattest.TicketWeComJSAPI, ww))
	wantCode(t, "the 3rd call within 60 minutes (limit 2)", ticketCall(t, s, wechattest.TicketWeComJSAPI, ww).ErrCode, 45009)
	s.Clock().Set(first.Truncate(time.Hour).Add(time.Hour)) // 11:00
	wantCode(t, "the turn of the clock hour frees nothing", ticketCall(t, s, wechattest.TicketWeComJSAPI, ww).ErrCode, 45009)
	s.Clock().Set(first.Add(time.Hour)) // 11:30
	ww = mustToken(t, wecom(t, s, wwID, wwSecret))
	mustTicket(t, ticketCall(t, s, wechattest.TicketWeComJSAPI, ww))
	wantCode(t, "the place freed by the first call is taken", ticketCall(t, s, wechattest.TicketWeComJSAPI, ww).ErrCode, 45009)
}

// TestTicketNewEndsOldKeepsOnlyThePrevious: under TicketNewEndsOld only the
// previous ticket gets the grace; any older one ends at once.
func TestTicketNewEndsOldKeepsOnlyThePrevious(t *testing.T) {
	s := start(t, wechattest.Config{TicketRotation: wechattest.TicketNewEndsOld, TicketGrace: time.Minute})
	oa := mustToken(t, stable(t, s, oaID, oaSecret, false))
	first := mustTicket(t, ticketCall(t, s, wechattest.TicketJSAPI, oa))
	second := mustTicket(t, ticketCall(t, s, wechattest.TicketJSAPI, oa))
	wantCode(t, "the first ticket within the grace", s.CheckTicket(oaID, wechattest.TicketJSAPI, first), 0)
	third := mustTicket(t, ticketCall(t, s, wechattest.TicketJSAPI, oa))
	wantCode(t, "the first ticket after a third", s.CheckTicket(oaID, wechattest.TicketJSAPI, first), 40001)
	wantCode(t, "the second ticket within its grace", s.CheckTicket(oaID, wechattest.TicketJSAPI, second), 0)
	wantCode(t, "the third ticket", s.CheckTicket(oaID, wechattest.TicketJSAPI, third), 0)
	if n := s.TicketsIssued(oaID); n != 3 {
		t.Errorf("TicketsIssued = %d, want 3", n)
	}
}

// TestTicketCheckRoute: GET /_sandbox/tickets/check answers CheckTicket.
func TestTicketCheckRoute(t *testing.T) {
	s := start(t, wechattest.Config{})
	oa := mustToken(t, stable(t, s, oaID, oaSecret, false))
	ticket := mustTicket(t, ticketCall(t, s, wechattest.TicketJSAPI, oa))
	check := func(typ, tk string) int {
		return do(t, http.MethodGet, s.URL+"/_sandbox/tickets/check?"+url.Values{"appid": {oaID}, "type": {typ}, "ticket": {tk}}.Encode(), "").ErrCode
	}
	wantCode(t, "the ticket", check("jsapi", ticket), 0)
	wantCode(t, "as a card ticket", check("wx_card", ticket), 40014)
	wantCode(t, "a ticket never issued", check("jsapi", "nope"), 40014)
}
