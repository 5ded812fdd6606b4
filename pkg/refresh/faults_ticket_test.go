package refresh_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// ticketFaultCases are the fault matrix's ticket rows (issue 14): each is
// about one ticket of an app, which wxtoken keeps as a credential of its own
// beside the token (see faultCase.ticket).
func ticketFaultCases() []faultCase {
	classic, stable := registry.Classic, registry.Stable
	jsapi := registry.TicketJSAPI
	gapTo := func(to time.Duration) []time.Duration { return []time.Duration{to, to + scheduleRate} }
	sbFault := func(f wechattest.Fault) func(*faultEnv) {
		return func(e *faultEnv) { e.b.sb.Inject(f) }
	}
	// A scenario starting 10 min past the hour: its ticket expires at
	// E = hh:10, is due at E−20 min and WeCom's hourly count resets at
	// E−10 min (hourTurns), inside the refresh margin.
	pastTheHour := t0.Add(10 * time.Minute)
	const hourTurns = -10 * time.Minute
	// tries is the WeChat client's attempts at one ticket call (a ticket
	// call is retried like normal-mode stable_token: it cannot end the
	// published ticket whatever WeChat does with a repeated call).
	// replays: Go's HTTP transport (here the test's proxy in front of the
	// sandbox) sends a GET again, once, when a pooled keep-alive
	// connection is closed without an answer. Only a connection left idle
	// by a successful call can be reused so: at most 2 stay idle per host
	// from before the outage, and the token's own call in the due run may
	// leave one more, so a dropped outage reaches WeChat 0 to 3 times more
	// than tries a run (measured: 1 to 3).
	const tries, replays = 4, 3

	return []faultCase{
		{name: "jsapi ticket: no fault (control)", mode: classic, ticket: jsapi,
			from: -20 * time.Minute, to: -19 * time.Minute, inject: func(*faultEnv) {},
			calls: [2]int{2, 2}, tokenCalls: [2]int{2, 2},
			why: "The ticket is fetched with the token in the first run and refreshed 20 min before it expires, as a classic token; the token keeps its own schedule (one call at start, one when due)."},
		{name: "jsapi ticket: getticket down 30 min (connections dropped), starting 15 min before due", mode: classic, ticket: jsapi,
			from: -35 * time.Minute, to: -5 * time.Minute, inject: sbFault(wechattest.Fault{Path: wechattest.PathTicket, Drop: true}),
			calls: [2]int{2 + 15*tries, 2 + 15*tries + replays}, tokenCalls: [2]int{2, 2},
			why: "The 20-minute margin bridges it: the published ticket stays valid while each of the 15 due runs tries 4 times (the client retries a ticket call, which cannot end the published ticket; Go's transport replays up to 3 of the dropped requests on reused connections) and the first run after the outage refreshes it. The token, on its own path, is refreshed on time."},
		{name: "jsapi ticket: getticket down 30 min (connections dropped), starting when due", mode: classic, ticket: jsapi,
			from: -20 * time.Minute, to: 10 * time.Minute, inject: sbFault(wechattest.Fault{Path: wechattest.PathTicket, Drop: true}),
			gap: gapTo(10 * time.Minute), calls: [2]int{2 + 30*tries, 2 + 30*tries + replays}, tokenCalls: [2]int{2, 2},
			why: "Cannot be bridged: the ticket expires 20 min into the outage; 4 tries a run for 30 runs (and up to 3 transport replays), and the first run after WeChat returns publishes a new ticket. A consumer whose signature fails asks the ticket route once a minute; each ask costs 4 more dropped calls and cannot help."},
		{name: "jsapi ticket: the access token revoked when the ticket is due (getticket answers 40001), stable", mode: stable, ticket: jsapi,
			rotation: wechattest.TicketNewEndsOld,
			from:     -20 * time.Minute, to: -19 * time.Minute,
			inject: func(e *faultEnv) { e.b.sb.Revoke(e.app.AppID) },
			calls:  [2]int{1 + 2, 1 + 2}, tokenCalls: [2]int{1 + 1, 1 + 1},
			why: "The ticket call with the published token is answered 40001; the ticket's holder refreshes the token through compare-and-refresh (WeChat confirms the token is dead, one stable_token call, the new token published) and asks for the ticket once more: two ticket calls and one token call in one run, no loop, no gap (the new ticket ends the old one at once under this rotation, and is published in the same run)."},
		{name: "jsapi ticket: getticket answers 40001 though the token is valid (3 answers), stable", mode: stable, ticket: jsapi,
			from: -20 * time.Minute, to: -10 * time.Minute,
			inject: sbFault(wechattest.Fault{Path: wechattest.PathTicket, ErrCode: 40001, Times: 3}),
			done:   func(e *faultEnv) bool { return e.fetches()-e.calls0 >= 3 },
			calls:  [2]int{1 + 3 + 1, 1 + 3 + 1}, tokenCalls: [2]int{2, 2},
			why: "Each 40001 makes the ticket's holder claim the token invalid; WeChat accepts the token on a business call, so it is kept (no token call) and the ticket attempt fails: one ticket call a run, never a loop, retried by the next run; the margin bridges it. The two token calls are the first run's and the stable token's own rotation at E−4 min."},
		{name: "WeCom jsapi ticket: hourly ticket limit used up by another server when due, 10 min before the hour (45009 \"api freq out of limit\")",
			mode: registry.GetToken, kind: registry.WeCom, ticket: jsapi, rotation: wechattest.TicketNewKeepsOld, start: pastTheHour,
			from: -20 * time.Minute, to: hourTurns,
			inject: spendTicketHourInFault,
			calls:  [2]int{1 + 1 + 1, 1 + 1 + 1}, tokenCalls: [2]int{2, 2},
			why: "WeCom's ticket limits are per hour, so its 45009 on a ticket call pauses the ticket until the hour turns (class hour_quota), not until Beijing midnight as WeChat's daily quota would: one refused call, then the first run of the new hour, 10 min before the ticket expires, fetches it. The other server's calls are not counted."},
		{name: "WeCom jsapi ticket: hourly ticket limit used up by another server when due, counted over the last 60 minutes (45009)",
			mode: registry.GetToken, kind: registry.WeCom, ticket: jsapi, rotation: wechattest.TicketNewKeepsOld, window: wechattest.TicketWindowRolling,
			start: pastTheHour, from: -20 * time.Minute, to: 40 * time.Minute, after: 15 * time.Minute,
			inject: spendTicketHourInFault,
			gap:    []time.Duration{50 * time.Minute, 50*time.Minute + scheduleRate}, recover: 11,
			calls: [2]int{1 + 3, 1 + 3}, tokenCalls: [2]int{2, 2},
			why: "WeCom does not say how it counts its hour; if over the last 60 minutes, the other server's calls at E−20 min keep the limit until E+40 min (the fault's end here). wxtoken asks once when the hour turns (E−10 min, refused again) and once at the next turn (E+50 min): no loop, one refused call an hour, and it recovers without a person, but the ticket lapses from E until then, 10 min longer than the window forces (a retry sooner than the hour would be refused under a per-hour count)."},
	}
}

// spendTicketHourInFault is another server with the app's access token using
// up WeCom's hourly ticket limit; its calls and tickets are kept out of the
// row's counts.
func spendTicketHourInFault(e *faultEnv) {
	calls, issued := spendTicketHour(e.b.t, e.b, e.app, e.ticket)
	e.otherCalls += calls
	e.otherIssued += issued
}

// spendTicketHour makes ticket calls for the app's ticket with its published
// access token, as another server of the corporation would, until WeCom
// answers 45009 (its hourly limit reached), and returns the calls made and
// the tickets they were issued.
func spendTicketHour(t *testing.T, b *bed, a registry.App, ticket registry.Ticket) (calls, issued int) {
	t.Helper()
	if a.Kind != registry.WeCom {
		t.Fatalf("spendTicketHour: %s is not a WeCom app", a.Name)
	}
	path := wechattest.PathWeComJSAPITicket
	q := url.Values{}
	if ticket == registry.TicketAgentConfig {
		path = wechattest.PathWeComAgentTicket
		q.Set("type", string(wechattest.TicketAgentConfig))
	}
	tok, _ := b.published(a.Name)
	q.Set("access_token", tok)
	cfg := b.sb.Config()
	limit := max(cfg.WeComTicketHourlyPerCorp, cfg.WeComTicketHourlyPerApp)
	for range limit + 1 {
		code, got := otherTicketCall(t, b.sb.URL+path+"?"+q.Encode())
		calls++
		switch {
		case code == 45009:
			return calls, issued
		case code != 0:
			t.Fatalf("another server's ticket call: errcode %d", code)
		case got:
			issued++
		}
	}
	t.Fatalf("%d ticket calls in an hour without WeCom's limit (45009)", calls)
	return calls, issued
}

// otherTicketCall makes one ticket call at u (which holds an access token:
// no error may quote it) and returns the errcode and whether a ticket came
// back.
func otherTicketCall(t *testing.T, u string) (int, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal("build the ticket call")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL and its token
		}
		t.Fatalf("another server's ticket call: %v", err)
	}
	defer resp.Body.Close()
	var ans struct {
		ErrCode int    `json:"errcode"`
		Ticket  string `json:"ticket"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatalf("another server's ticket call: HTTP %d, undecodable answer", resp.StatusCode)
	}
	return ans.ErrCode, ans.Ticket != ""
}

// TestWeComTicketHourlyLimitEndsAtTheHour: WeCom limits ticket calls per
// hour (400 a corporation, 100 an application) and answers 45009 "api freq
// out of limit" when another server used the hour up. The limit ends at the
// hour, so a ticket refused 10 min before the hour, 20 min before it
// expires, is fetched once the hour has turned and never lapses. (Found by
// the fault matrix: 45009 was read as WeChat's daily quota, which paused
// the ticket until Beijing midnight and left it dead for hours.)
func TestWeComTicketHourlyLimitEndsAtTheHour(t *testing.T) {

	b := newBed(t, wechattest.Config{Clock: wechattest.NewClock(t0.Add(10*time.Minute), 0), TicketRotation: wechattest.TicketNewKeepsOld})
	spec := appNamed("corp", registry.WeCom, registry.GetToken)
	spec.Tickets = registry.TicketSetOf(registry.TicketJSAPI)
	a := b.app(spec)
	key := ticketKey(a.Name, registry.TicketJSAPI)
	sched := b.refresher("scheduler")
	mustRefreshDue(t, sched)
	exp := b.state(key).ExpiresAt // hh:10
	hour := exp.Truncate(time.Hour)
	if !hour.After(exp.Add(-registry.DefaultRefreshMargin)) {
		t.Fatalf("setup: the hour %v must turn inside the ticket's refresh margin (expiry %v)", hour, exp)
	}

	// When the ticket is due, another server has just used up the hour.
	b.sb.Clock().Set(exp.Add(-registry.DefaultRefreshMargin))
	spendTicketHour(t, b, a, registry.TicketJSAPI)
	for b.sb.Now().Before(exp.Add(10 * time.Minute)) {
		mustRefreshDue(t, sched)
		if now := b.sb.Now(); !now.Before(exp) {
			ticket, _ := b.published(key)
			if code := b.sb.CheckTicket(a.AppID, wechattest.TicketWeComJSAPI, ticket); code != 0 {
				st := b.state(key)
				t.Fatalf("at E%+v the published ticket fails WeChat's check (errcode %d): WeCom's hourly limit ended at %s UTC (E%+v), "+
					"but the ticket's calls are paused until %s UTC (E%+v; errcode %d, class %s)",
					now.Sub(exp), code, hour.UTC().Format(time.TimeOnly), hour.Sub(exp),
					st.BlockedUntil.UTC().Format(time.DateTime), st.BlockedUntil.Sub(exp), st.LastErrCode, st.LastErrorClass)
			}
		}
		b.sb.Clock().Advance(scheduleRate)
	}
}
