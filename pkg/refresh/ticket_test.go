package refresh_test

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// sandboxTicket is the sandbox's name of an app's ticket.
func sandboxTicket(kind registry.Kind, t registry.Ticket) wechattest.TicketType {
	switch {
	case kind == registry.WeCom && t == registry.TicketJSAPI:
		return wechattest.TicketWeComJSAPI
	case t == registry.TicketAgentConfig:
		return wechattest.TicketAgentConfig
	case t == registry.TicketCard:
		return wechattest.TicketCard
	}
	return wechattest.TicketJSAPI
}

func ticketKey(app string, t registry.Ticket) string {
	return registry.Credential{App: app, Ticket: t}.Key()
}

// rotations are the behaviours of a repeated ticket call WeChat does not
// document; wxtoken must be right under each.
var rotations = []wechattest.Config{
	{TicketRotation: wechattest.TicketSame},
	{TicketRotation: wechattest.TicketNewKeepsOld},
	{TicketRotation: wechattest.TicketNewEndsOld},
}

// TestTicketDayOnTheSandboxClock: 24 simulated hours of the schedule for an
// app with tickets, under each rotation (6 hours on the engines). Every ticket read from SSM at any
// instant (every 10 s) passes WeChat's check; each ticket costs at most 15
// ticket calls a day (about one every 100 minutes); the token keeps its own
// schedule (a classic token at most 15 calls) however the tickets go.
func TestTicketDayOnTheSandboxClock(t *testing.T) {
	apps := []registry.App{
		{Name: "shop", Kind: registry.OfficialAccount, Mode: registry.Classic, Tickets: registry.TicketSetOf(registry.TicketJSAPI, registry.TicketCard)},
		{Name: "corp", Kind: registry.WeCom, Mode: registry.GetToken, Tickets: registry.TicketSetOf(registry.TicketJSAPI, registry.TicketAgentConfig)},
	}
	for i, cfg := range rotations {
		for _, spec := range apps {
			t.Run(cfg.TicketRotation.String()+"/"+string(spec.Kind), func(t *testing.T) {
				// The engines for one case; the fakes for the rest (same
				// semantics, kept so by the contract suites).
				b, span := newFakeBed(t, cfg), 24*time.Hour
				if i == 0 && spec.Kind == registry.OfficialAccount {
					// On the engines, a quarter of the day: four rotations.
					b, span = newBed(t, cfg), 6*time.Hour
				}
				// One ticket call every TokenLifetime − margin (100 min).
				limit := math.Ceil(float64(span) / float64(registry.TokenLifetime-registry.DefaultRefreshMargin))
				a := spec
				a.AppID = appNamed(a.Name, a.Kind, a.Mode).AppID
				a = b.app(a)
				// The SSM version checks are paced in real time (10 a
				// second); a simulated day does not wait for them.
				sched := b.refresher("scheduler", func(r *refresh.Refresher) { r.CheckRate = 1 << 20 })
				start := b.sb.Now()
				for now := start; now.Before(start.Add(span)); now = b.sb.Now() {
					mustRefreshDue(t, sched)
					for s := 0; s < int(scheduleRate/(10*time.Second)); s++ {
						tok, _ := b.published(a.Name)
						if code := b.sb.Check(tok); code != 0 {
							t.Fatalf("at +%v the published token is rejected with errcode %d", b.sb.Now().Sub(start), code)
						}
						for _, tk := range a.Tickets.List() {
							ticket, _ := b.published(ticketKey(a.Name, tk))
							if code := b.sb.CheckTicket(a.AppID, sandboxTicket(a.Kind, tk), ticket); code != 0 {
								t.Fatalf("at +%v the published %s ticket fails WeChat's check with errcode %d", b.sb.Now().Sub(start), tk, code)
							}
						}
						b.sb.Clock().Advance(10 * time.Second)
					}
				}
				perTicket := float64(b.sb.TicketCalls(a.AppID)) / float64(len(a.Tickets.List()))
				t.Logf("%d token calls, %.1f ticket calls per ticket in %v", b.sb.TokenCalls(a.AppID), perTicket, span)
				if perTicket > limit {
					t.Errorf("%.1f ticket calls per ticket in %v, want at most %.0f", perTicket, span, limit)
				}
				if n := b.sb.TokenCalls(a.AppID); float64(n) > limit {
					t.Errorf("%d token calls in %v, want at most %.0f: tickets must not cost the token calls", n, span, limit)
				}
			})
		}
	}
}

// TestTicketCallRejectsTheToken: a ticket call answered 40001 (WeChat ended
// the token) refreshes the token through compare-and-refresh and asks for
// the ticket once more: one token call, two ticket calls, both published
// and valid. When the token cannot be had, the ticket attempt fails once,
// without a loop, and the last good ticket stays published.
func TestTicketCallRejectsTheToken(t *testing.T) {
	b := newBed(t, wechattest.Config{TicketRotation: wechattest.TicketNewEndsOld})
	a := appNamed("shop", registry.OfficialAccount, registry.Classic)
	a.Tickets = registry.TicketSetOf(registry.TicketJSAPI)
	a = b.app(a)
	sched := b.refresher("scheduler")
	mustRefreshDue(t, sched)
	key := ticketKey(a.Name, registry.TicketJSAPI)
	first, _ := b.published(key)

	// WeChat ends the token early; the ticket becomes due first (100
	// minutes), the token is due at 100 minutes too, so make the ticket
	// older: refresh it on demand now and move on by 99 minutes.
	b.sb.Revoke(a.AppID)
	tokenCalls, ticketCalls := b.sb.TokenCalls(a.AppID), b.sb.TicketCalls(a.AppID)
	res, err := sched.RefreshTicket(ctxT(t), a.Name, registry.TicketJSAPI, first)
	if err != nil {
		t.Fatalf("RefreshTicket: %v", err)
	}
	if got := b.sb.TokenCalls(a.AppID) - tokenCalls; got != 1 {
		t.Errorf("%d token calls, want 1 (the compare-and-refresh of the rejected token)", got)
	}
	if got := b.sb.TicketCalls(a.AppID) - ticketCalls; got != 2 {
		t.Errorf("%d ticket calls, want 2 (rejected, then with the new token)", got)
	}
	tok, _ := b.published(a.Name)
	ticket, _ := b.published(key)
	if b.sb.Check(tok) != 0 || b.sb.CheckTicket(a.AppID, wechattest.TicketJSAPI, ticket) != 0 || res.Token != ticket || ticket == first {
		t.Errorf("after the refresh: token check %d, ticket check %d, answered the published ticket %v",
			b.sb.Check(tok), b.sb.CheckTicket(a.AppID, wechattest.TicketJSAPI, ticket), res.Token == ticket)
	}

	// The token cannot be had now (WeChat is down for token calls): the
	// ticket attempt fails once, and nothing loops.
	b.sb.Revoke(a.AppID)
	b.sb.Inject(wechattest.Fault{Path: wechattest.PathToken, ErrCode: -1})
	tokenCalls, ticketCalls = b.sb.TokenCalls(a.AppID), b.sb.TicketCalls(a.AppID)
	b.sb.Clock().Advance(2 * time.Minute) // past the minimum interval
	_, err = sched.RefreshTicket(ctxT(t), a.Name, registry.TicketJSAPI, ticket)
	if err == nil {
		t.Fatal("RefreshTicket succeeded without a token")
	}
	if got := b.sb.TicketCalls(a.AppID) - ticketCalls; got != 1 {
		t.Errorf("%d ticket calls without a token, want 1", got)
	}
	if got := b.sb.TokenCalls(a.AppID) - tokenCalls; got > 4 {
		t.Errorf("%d token calls, want the client's bounded retries (at most 4)", got)
	}
	if still, _ := b.published(key); still != ticket {
		t.Error("a failed ticket refresh changed the published ticket")
	}
	b.sb.ClearFaults()
}

// TestTicketOnDemand: a claim against an old ticket gets the published one
// without a WeChat call; a claim against the published one refreshes it
// once for every concurrent caller; a ticket the app has not registered is
// ErrUnknownTicket.
func TestTicketOnDemand(t *testing.T) {
	b := newBed(t, wechattest.Config{TicketRotation: wechattest.TicketNewKeepsOld})
	a := appNamed("shop", registry.OfficialAccount, registry.Stable)
	a.Tickets = registry.TicketSetOf(registry.TicketJSAPI)
	a = b.app(a)
	r := b.refresher("api")
	res, err := r.RefreshTicket(ctxT(t), a.Name, registry.TicketJSAPI, "")
	if err != nil {
		t.Fatal(err)
	}
	first := res.Token
	b.saw(first)
	calls := b.sb.TicketCalls(a.AppID)
	if again, err := r.RefreshTicket(ctxT(t), a.Name, registry.TicketJSAPI, "an-old-ticket"); err != nil || again.Token != first || b.sb.TicketCalls(a.AppID) != calls {
		t.Errorf("a claim against an older ticket: %v, same %v, %d ticket calls", err, again.Token == first, b.sb.TicketCalls(a.AppID)-calls)
	}

	const callers = 12
	var wg sync.WaitGroup
	got := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := b.refresher(fmt.Sprintf("api-%d", i)).RefreshTicket(ctxT(t), a.Name, registry.TicketJSAPI, first)
			got[i], errs[i] = res.Token, err
		}()
	}
	wg.Wait()
	published, _ := b.published(ticketKey(a.Name, registry.TicketJSAPI))
	for i := range callers {
		if errs[i] != nil || got[i] != published {
			t.Errorf("caller %d: %v, the published ticket: %v", i, errs[i], got[i] == published)
		}
	}
	if n := b.sb.TicketCalls(a.AppID) - calls; n != 1 || published == first {
		t.Errorf("%d ticket calls for %d callers claiming the same ticket, want 1 and a new ticket", n, callers)
	}

	for _, tk := range []registry.Ticket{registry.TicketCard, "bogus", ""} {
		if _, err := r.RefreshTicket(ctxT(t), a.Name, tk, ""); !errors.Is(err, refresh.ErrUnknownTicket) {
			t.Errorf("ticket %q: %v, want ErrUnknownTicket", tk, err)
		}
	}
	if _, err := r.RefreshTicket(ctxT(t), "nobody", registry.TicketJSAPI, ""); !errors.Is(err, refresh.ErrUnknownApp) {
		t.Errorf("an unknown app: %v, want ErrUnknownApp", err)
	}
}

// TestTicketRemovedIsCleanedUp: a ticket taken out of the registration is
// no longer refreshed, and its state is marked for cleanup like a removed
// app's; the token goes on.
func TestTicketRemovedIsCleanedUp(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := appNamed("shop", registry.OfficialAccount, registry.Stable)
	a.Tickets = registry.TicketSetOf(registry.TicketJSAPI)
	a = b.app(a)
	sched := b.refresher("scheduler")
	mustRefreshDue(t, sched)
	key := ticketKey(a.Name, registry.TicketJSAPI)
	if st := b.state(key); !st.HasToken() || !st.CleanupAt.IsZero() {
		t.Fatalf("ticket state %+v, want a committed ticket", st)
	}
	a.Tickets = 0
	b.putItem(a)
	rep := mustRefreshDue(t, sched)
	for _, o := range rep.Outcomes {
		if o.Ticket != "" {
			t.Errorf("the run still works on ticket %s: %s", o.App, o.Status)
		}
	}
	if st := b.state(key); st.CleanupAt.IsZero() {
		t.Error("the removed ticket's state is not marked for cleanup")
	}
	if st := b.state(a.Name); !st.CleanupAt.IsZero() {
		t.Error("the token's state was marked for cleanup")
	}
}
