package refresh_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/lease"
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
				for _, tk := range a.Tickets.List() {
					n := b.sb.TicketRequests(a.AppID, sandboxTicket(a.Kind, tk))
					t.Logf("%s: %d ticket calls in %v", tk, n, span)
					if float64(n) > limit || n == 0 {
						t.Errorf("%d %s ticket calls in %v, want 1 to %.0f", n, tk, span, limit)
					}
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
	a := jsapiApp(b, "shop", registry.Classic)
	sched := b.refresher("scheduler")
	mustRefreshDue(t, sched)
	key := ticketKey(a.Name, registry.TicketJSAPI)
	first, _ := b.published(key)

	// WeChat ends the token early; a business server finds the ticket
	// rejected and claims it invalid.
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
	if st := b.state(key); st.LastErrorClass != string(refresh.ClassTokenUnavailable) || !st.BlockedUntil.IsZero() || !st.SupersededAt.IsZero() {
		t.Errorf("the ticket's state after a rejected token that could not be refreshed: class %q, paused until %v, superseded at %v; want %s, no pause, not superseded",
			st.LastErrorClass, st.BlockedUntil, st.SupersededAt, refresh.ClassTokenUnavailable)
	}
	b.sb.ClearFaults()
}

// TestTicketOnDemand: a claim against an old ticket gets the published one
// without a WeChat call; a claim against the published one refreshes it
// once for every concurrent caller; a ticket the app has not registered is
// ErrUnknownTicket.
func TestTicketOnDemand(t *testing.T) {
	b := newBed(t, wechattest.Config{TicketRotation: wechattest.TicketNewKeepsOld})
	a := jsapiApp(b, "shop", registry.Stable)
	r := b.refresher("api")
	res, err := r.RefreshTicket(ctxT(t), a.Name, registry.TicketJSAPI, "")
	if err != nil {
		t.Fatal(err)
	}
	first := res.Token
	b.saw(first)
	if res.App != a.Name {
		t.Errorf("RefreshTicket answered app %q, want %q (not the credential key)", res.App, a.Name)
	}
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
	a := jsapiApp(b, "shop", registry.Stable)
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

// TestTicketWithoutAToken: when the access token cannot be had (WeChat's
// token API is down, or the token is paused after 45009), the ticket
// attempt fails without a ticket call: nothing is counted against the
// ticket's budget, the ticket is not marked superseded, it takes neither
// the token's pause nor its class, and no error hands out the token.
func TestTicketWithoutAToken(t *testing.T) {
	tests := []struct {
		name    string
		errcode int
	}{
		{"token API down", -1},
		{"token quota used up", 45009},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBed(t, wechattest.Config{})
			a := jsapiApp(b, "shop", registry.Classic)
			sched := b.refresher("scheduler")
			mustRefreshDue(t, sched)
			key := ticketKey(a.Name, registry.TicketJSAPI)
			published, _ := b.published(key)
			token, _ := b.published(a.Name)
			before := b.state(key)

			b.sb.Inject(wechattest.Fault{Path: wechattest.PathToken, ErrCode: tt.errcode})
			b.sb.Clock().Advance(121 * time.Minute) // both expired: the ticket needs a new token
			calls := b.sb.TicketCalls(a.AppID)
			mustRefreshDue(t, sched)
			if got := b.sb.TicketCalls(a.AppID) - calls; got != 0 {
				t.Fatalf("%d ticket calls without a token, want 0", got)
			}
			st := b.state(key)
			if st.CallsToday != before.CallsToday {
				t.Errorf("the ticket's calls today went from %d to %d without a ticket call", before.CallsToday, st.CallsToday)
			}
			if !st.SupersededAt.IsZero() {
				t.Error("the ticket was marked superseded without a ticket call")
			}
			if !st.BlockedUntil.IsZero() {
				t.Errorf("the ticket is paused until %v: it took the token's pause", st.BlockedUntil)
			}
			if st.LastErrorClass != string(refresh.ClassTokenUnavailable) || st.LastErrCode != 0 {
				t.Errorf("the ticket's last error: class %q, errcode %d; want %q without the token's errcode", st.LastErrorClass, st.LastErrCode, refresh.ClassTokenUnavailable)
			}
			if still, _ := b.published(key); still != published {
				t.Error("the published ticket changed")
			}
			_, err := b.refresher("api").RefreshTicket(ctxT(t), a.Name, registry.TicketJSAPI, published)
			var refused *refresh.RefusedError
			if errors.As(err, &refused) && refused.Current.Token == token {
				t.Error("a ticket refusal carries the access token as the current credential")
			}
			if d := refresh.Decide(err); d.Class != refresh.ClassTokenUnavailable || d.HTTPStatus != 503 {
				t.Errorf("RefreshTicket without a token: %v decided %+v, want class %s, 503", err, d, refresh.ClassTokenUnavailable)
			}

			// WeChat recovers (and, for 45009, the quota is cleared): the
			// next run has a token and the ticket.
			b.sb.ClearFaults()
			if tt.errcode == 45009 {
				unblock(t, b, a.Name)
			}
			b.sb.Clock().Advance(time.Minute)
			mustRefreshDue(t, sched)
			ticket, _ := b.published(key)
			if b.sb.CheckTicket(a.AppID, wechattest.TicketJSAPI, ticket) != 0 {
				t.Error("no valid ticket once the token is back")
			}
		})
	}
}

// unblock ends an app's pause as `wxtoken apps unblock` does: under the
// app's lease.
func unblock(t *testing.T, b *bed, app string) {
	t.Helper()
	now := b.sb.Now()
	if _, err := b.leases().Acquire(ctxT(t), app, "operator", now, now.Add(30*time.Second)); err != nil {
		t.Fatalf("take %s's lease: %v", app, err)
	}
	if err := b.leases().Release(ctxT(t), app, "operator", now, lease.Fields{ClearBlocks: true}); err != nil {
		t.Fatalf("unblock %s: %v", app, err)
	}
}

// TestTicketOfAnInvalidAppIsKept: an app whose registration became invalid
// (a typo) keeps the state of its tickets as it keeps its token's: nothing
// is marked for cleanup while a person fixes it.
func TestTicketOfAnInvalidAppIsKept(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := jsapiApp(b, "shop", registry.Stable)
	sched := b.refresher("scheduler")
	mustRefreshDue(t, sched)
	item := registry.Item(a)
	item["mode"] = &ddbtypes.AttributeValueMemberS{Value: "stabel"}
	b.putRawItem(a.Name, item)
	rep := mustRefreshDue(t, sched)
	if rep.Count(refresh.StatusInvalid) != 1 {
		t.Fatalf("outcomes %+v, want the app invalid", rep.Outcomes)
	}
	for _, key := range []string{a.Name, ticketKey(a.Name, registry.TicketJSAPI)} {
		if st := b.state(key); !st.CleanupAt.IsZero() {
			t.Errorf("%s's state is marked for cleanup while the app is only invalid", key)
		}
	}
}

// TestSharedTicketHasOneFetcher: two registrations of one account (allowed
// in stable mode) that both opt into the account's jsapi ticket would be two
// fetchers of one ticket: the first by name keeps it, the other's ticket is
// reported invalid and never fetched, and both tokens go on.
func TestSharedTicketHasOneFetcher(t *testing.T) {
	b := newBed(t, wechattest.Config{TicketRotation: wechattest.TicketNewEndsOld})
	first := appNamed("a-shop", registry.OfficialAccount, registry.Stable)
	first.Tickets = registry.TicketSetOf(registry.TicketJSAPI)
	first = b.app(first)
	second := first
	second.Name = "b-shop"
	b.putItem(second)
	b.putSecret(second.Name, "secret-"+first.Name+"-0123456789abcdefghij")
	rep := mustRefreshDue(t, b.refresher("scheduler"))
	var invalid []refresh.Outcome
	for _, o := range rep.Outcomes {
		if o.Status == refresh.StatusInvalid {
			invalid = append(invalid, o)
		}
	}
	if len(invalid) != 1 || invalid[0].App != ticketKey(second.Name, registry.TicketJSAPI) || !strings.Contains(fmt.Sprint(invalid[0].Err), first.Name) {
		t.Fatalf("invalid outcomes %+v, want b-shop's jsapi ticket, naming a-shop", invalid)
	}
	if n := b.sb.TicketCalls(first.AppID); n != 1 {
		t.Errorf("%d ticket calls, want 1", n)
	}
	for _, name := range []string{first.Name, second.Name} {
		if tok, _ := b.published(name); b.sb.Check(tok) != 0 {
			t.Errorf("%s's token is not valid", name)
		}
	}
	// On demand too: the sweep recorded the conflict on the second
	// registration's ticket, so the API refuses it from the state, without
	// listing the registrations (its role has no Scan) or a WeChat call;
	// the first's is served.
	if st := b.state(ticketKey(second.Name, registry.TicketJSAPI)); st.LastErrorClass != string(refresh.ClassInvalid) || st.BlockedUntil.IsZero() {
		t.Errorf("the sweep did not record the conflict on the ticket's state: class %q, paused until %v", st.LastErrorClass, st.BlockedUntil)
	}
	api := b.refresher("api")
	lists := &countingApps{Apps: api.Apps}
	api.Apps = lists
	errs := make([]error, 10)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = api.RefreshTicket(context.Background(), second.Name, registry.TicketJSAPI, []string{"", "a-stale-ticket"}[i%2])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if c := refresh.ClassOf(err); c != refresh.ClassInvalid {
			t.Errorf("on-demand ticket of the second registration: %v (class %q), want invalid_registration", err, c)
		}
	}
	if n := lists.n.Load(); n != 0 {
		t.Errorf("the API listed the registrations %d times, want 0", n)
	}
	if n := b.sb.TicketCalls(first.AppID); n != 1 {
		t.Errorf("%d ticket calls after the refused requests, want 1", n)
	}
	if res, err := api.RefreshTicket(context.Background(), first.Name, registry.TicketJSAPI, ""); err != nil || res.Token == "" {
		t.Errorf("the first registration's ticket: %v", err)
	}
	// The next run does not write the conflict again while its pause holds.
	before := b.state(ticketKey(second.Name, registry.TicketJSAPI))
	b.sb.Clock().Advance(time.Minute)
	mustRefreshDue(t, b.refresher("scheduler"))
	if after := b.state(ticketKey(second.Name, registry.TicketJSAPI)); !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("the conflict was written again (updated %v, then %v)", before.UpdatedAt, after.UpdatedAt)
	}
	// While the conflict lasts the pause never lapses: it is renewed
	// before its end.
	for range 40 {
		b.sb.Clock().Advance(time.Minute)
		mustRefreshDue(t, b.refresher("scheduler"))
		if st := b.state(ticketKey(second.Name, registry.TicketJSAPI)); !st.BlockedUntil.After(b.sb.Now().Add(time.Minute)) {
			t.Fatalf("at %v the conflict's pause ends at %v: it would lapse before the next run", b.sb.Now(), st.BlockedUntil)
		}
	}
	// Fixed (the first registration gives the ticket up): the sweep ends
	// the pause, and the second's ticket is fetched.
	first.Tickets = 0
	b.putItem(first)
	for range 2 {
		b.sb.Clock().Advance(time.Minute)
		mustRefreshDue(t, b.refresher("scheduler"))
	}
	if st := b.state(ticketKey(second.Name, registry.TicketJSAPI)); !st.BlockedUntil.IsZero() || st.LastErrorClass != "" || !st.HasToken() {
		t.Errorf("after the fix: paused until %v, class %q, ticket fetched %v; want no pause and the ticket", st.BlockedUntil, st.LastErrorClass, st.HasToken())
	}
}

// countingApps counts the listings of the registrations.
type countingApps struct {
	refresh.Apps
	n atomic.Int32
}

func (c *countingApps) List(ctx context.Context) ([]registry.App, []error, error) {
	c.n.Add(1)
	return c.Apps.List(ctx)
}

// jsapiApp registers an Official Account in mode with the jsapi ticket.
func jsapiApp(b *bed, name string, mode registry.Mode) registry.App {
	b.t.Helper()
	a := appNamed(name, registry.OfficialAccount, mode)
	a.Tickets = registry.TicketSetOf(registry.TicketJSAPI)
	return b.app(a)
}
