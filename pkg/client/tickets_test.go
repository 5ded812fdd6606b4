package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/ticket"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const corpID = "wwclient00000001"

// sandboxType is the sandbox's name for an app's ticket.
func sandboxType(kind registry.Kind, t ticket.Ticket) wechattest.TicketType {
	if kind == registry.WeCom && t == ticket.JSAPI {
		return wechattest.TicketWeComJSAPI
	}
	return wechattest.TicketType(t)
}

func TestTicketIsReadOnceAndCached(t *testing.T) {
	oa := shop()
	oa.Tickets = registry.TicketSetOf(ticket.JSAPI, ticket.Card)
	wecom := registry.App{Name: "office", AppID: corpID, Kind: registry.WeCom, Mode: registry.GetToken,
		Tickets: registry.TicketSetOf(ticket.JSAPI, ticket.AgentConfig)}
	l := newLocal(t, oa)
	l.Register(wecom)
	tests := []struct {
		app registry.App
		t   ticket.Ticket
	}{
		{oa, ticket.JSAPI}, {oa, ticket.Card}, {wecom, ticket.JSAPI}, {wecom, ticket.AgentConfig},
	}
	for _, tt := range tests {
		t.Run(tt.app.Name+"/"+string(tt.t), func(t *testing.T) {
			published := l.PublishTicket(tt.app.Name, tt.t)
			l.reads.Store(0)
			requests := l.Requests.Load()
			var mu sync.Mutex
			now := time.Now()
			c := l.client(tt.app.Name, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
			for i := range 3 {
				got, err := c.Ticket(context.Background(), tt.t)
				if err != nil || got != published {
					t.Fatalf("Ticket #%d: %v (the published one: %v)", i, err, got == published)
				}
			}
			if n := l.reads.Load(); n != 1 {
				t.Errorf("three Ticket calls made %d SSM reads, want 1 (cached)", n)
			}
			if n := l.sb.CheckTicket(tt.app.AppID, sandboxType(tt.app.Kind, tt.t), published); n != 0 {
				t.Errorf("WeChat rejects the ticket: %d", n)
			}
			m := l.meta(registry.Credential{App: tt.app.Name, Ticket: tt.t}.Key())
			for i, at := range []time.Time{now.Add(client.DefaultMaxAge), m.RotatesAt.Add(rotation.Lag + rotation.Jitter)} {
				mu.Lock()
				now = at
				mu.Unlock()
				if _, err := c.Ticket(context.Background(), tt.t); err != nil || l.reads.Load() != int32(1+i) {
					t.Errorf("%v after the planned rotation: %d reads (%v), want %d", at.Sub(m.RotatesAt), l.reads.Load(), err, 1+i)
				}
			}
			if l.Requests.Load() != requests {
				t.Error("reading a published ticket called the API")
			}
			// The token's cache is another one.
			if tok, err := c.Token(context.Background()); err != nil || tok == published {
				t.Errorf("Token: %v (the ticket: %v)", err, tok == published)
			}
		})
	}
}

func TestTicketBeforeAnyPublish(t *testing.T) {
	app := shop()
	app.Tickets = registry.TicketSetOf(ticket.JSAPI)
	l := newLocal(t, app)
	noAPI := l.client("shop", nil)
	noAPI.Endpoint = ""
	if _, err := noAPI.Ticket(context.Background(), ticket.JSAPI); !errors.Is(err, client.ErrNoTicket) {
		t.Errorf("without an API: %v, want ErrNoTicket", err)
	}
	tk, err := l.client("shop", nil).Ticket(context.Background(), ticket.JSAPI)
	if err != nil {
		t.Fatal(err)
	}
	l.signedOnly()
	if l.sb.CheckTicket(appID, wechattest.TicketJSAPI, tk) != 0 || l.Requests.Load() != 1 || l.sb.TicketRequests(appID, wechattest.TicketJSAPI) != 1 {
		t.Errorf("ticket valid: %v, API requests %d, WeChat ticket calls %d; want a valid ticket from one request and one call",
			l.sb.CheckTicket(appID, wechattest.TicketJSAPI, tk) == 0, l.Requests.Load(), l.sb.TicketRequests(appID, wechattest.TicketJSAPI))
	}
	if tk != l.PublishedTicket("shop", ticket.JSAPI) {
		t.Error("the API's ticket is not the published one")
	}
}

func TestRefreshTicketIsCoalesced(t *testing.T) {
	app := shop()
	app.Tickets = registry.TicketSetOf(ticket.JSAPI)
	// A new ticket ends the old one at once: the stale ticket is really bad.
	l := newLocalWith(t, stacktest.Options{Sandbox: wechattest.Config{TicketRotation: wechattest.TicketNewEndsOld}}, app)
	stale := l.PublishTicket("shop", ticket.JSAPI)
	c := l.client("shop", nil)
	var wg sync.WaitGroup
	got := make([]string, 20)
	errs := make([]error, 20)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.RefreshTicket(context.Background(), ticket.JSAPI, stale)
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != got[0] || got[i] == stale {
			t.Fatalf("caller %d: %v (the same ticket for all: %v, a new one: %v)", i, errs[i], got[i] == got[0], got[i] != stale)
		}
	}
	if l.sb.CheckTicket(appID, wechattest.TicketJSAPI, stale) == 0 {
		t.Error("the sandbox still accepts the stale ticket under TicketNewEndsOld")
	}
	l.signedOnly()
	if n := l.Requests.Load(); n != 1 {
		t.Errorf("20 concurrent ticket refreshes sent %d requests, want 1", n)
	}
	if n := l.sb.TicketRequests(appID, wechattest.TicketJSAPI); n != 2 {
		t.Errorf("WeChat ticket calls %d, want 2 (publish + one refresh)", n)
	}
	if got[0] != l.PublishedTicket("shop", ticket.JSAPI) || l.sb.CheckTicket(appID, wechattest.TicketJSAPI, got[0]) != 0 {
		t.Error("the refreshed ticket is not the published one, or not valid")
	}
	// Cached: signing needs no SSM read.
	sig, err := c.SignURL(context.Background(), "https://shop.example/pay?x=1#top")
	if err != nil || l.reads.Load() != 0 {
		t.Fatalf("SignURL: %v after %d SSM reads, want the cached ticket", err, l.reads.Load())
	}
	if want := client.SignJSSDK(got[0], sig.NonceStr, sig.Timestamp, "https://shop.example/pay?x=1"); sig.Signature != want || sig.URL != "https://shop.example/pay?x=1" {
		t.Errorf("SignURL: %+v, want the signature %s of the URL without its fragment", sig, want)
	}
}

func TestTicketRefused(t *testing.T) {
	l := newLocal(t, shop()) // no tickets registered
	c := l.client("shop", nil)
	tk, err := c.Ticket(context.Background(), ticket.JSAPI)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "unknown_ticket" || tk != "" {
		t.Errorf("a ticket the app does not keep: %v, want 404 unknown_ticket", err)
	}
	if _, err := c.SignURL(context.Background(), "https://shop.example/"); !errors.As(err, &ae) || ae.Code != "unknown_ticket" {
		t.Errorf("SignURL without a ticket: %v, want unknown_ticket", err)
	}
	n := l.Requests.Load()
	if _, err := c.Ticket(context.Background(), "jsapi_ticket"); err == nil || !strings.Contains(err.Error(), "not a ticket") || l.Requests.Load() != n {
		t.Errorf("an unknown ticket name: %v (requests %d → %d), want a local refusal", err, n, l.Requests.Load())
	}
}

// TestTicketAgeIsNotItsExpiry: a refresh that gets the same ticket back
// (what integrators report WeChat does, with a full expires_in) leaves the
// parameter untouched, so its LastModifiedDate says nothing of the ticket's
// expiry; its rotation meta does. A ticket extended that way and read 3
// hours after its publication is used and cached without asking the API;
// and without meta (a stack before it), with or without an API, it is
// still cached, for MaxAge.
func TestTicketAgeIsNotItsExpiry(t *testing.T) {
	app := shop()
	app.Tickets = registry.TicketSetOf(ticket.JSAPI)
	l := newLocal(t, app)
	published := l.PublishTicket("shop", ticket.JSAPI)
	key := registry.Credential{App: "shop", Ticket: ticket.JSAPI}.Key()
	// The schedule's planned rotation: the sandbox answers the same
	// ticket with a new life (its default rotation). The meta's times are
	// whole seconds, rounded down.
	l.sb.Clock().Set(l.meta(key).RotatesAt.Add(time.Second))
	if _, err := l.Refresher.RefreshDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.PublishedTicket("shop", ticket.JSAPI) != published {
		t.Fatal("the sandbox issued another ticket; this test needs the same one extended")
	}
	l.sb.Clock().Set(l.sb.Now().Add(80 * time.Minute)) // 3 h after the publish
	requests := l.Requests.Load()
	read := func(name string, c *client.Client) {
		t.Helper()
		l.reads.Store(0)
		for range 3 {
			if got, err := c.Ticket(context.Background(), ticket.JSAPI); err != nil || got != published {
				t.Fatalf("%s: %v (the published ticket: %v)", name, err, got == published)
			}
		}
		if n := l.reads.Load(); n != 1 {
			t.Errorf("%s: 3 reads of a ticket published 3 hours ago made %d SSM reads, want 1 (cached)", name, n)
		}
	}
	read("with meta", l.client("shop", l.sb.Now))
	if _, err := ssm.NewFromConfig(l.cfg).DeleteParameter(context.Background(), &ssm.DeleteParameterInput{Name: aws.String(l.Prefix + "/shop/jsapi_ticket_meta")}); err != nil {
		t.Fatal(err)
	}
	for _, endpoint := range []string{l.APIURL, ""} {
		c := l.client("shop", l.sb.Now)
		c.Endpoint = endpoint
		read(fmt.Sprintf("without meta, endpoint %q", endpoint), c)
	}
	if n := l.Requests.Load() - requests; n != 0 {
		t.Errorf("%d API requests for a published ticket, want 0", n)
	}
}

// TestResign: when WeChat ends a ticket as soon as it issues the next, a
// process whose cache still holds the old ticket signs a page that is then
// rejected (the window is MaxAge); Resign with the rejected signature gets
// the ticket published meanwhile, without a WeChat call, and signs again.
func TestResign(t *testing.T) {
	app := shop()
	app.Tickets = registry.TicketSetOf(ticket.JSAPI)
	l := newLocalWith(t, stacktest.Options{Sandbox: wechattest.Config{TicketRotation: wechattest.TicketNewEndsOld}}, app)
	old := l.PublishTicket("shop", ticket.JSAPI)
	c := l.client("shop", nil)
	const page = "https://shop.example/pay?order=42#top"
	first, err := c.SignURL(context.Background(), page)
	if err != nil {
		t.Fatal(err)
	}
	// Another server's claim (or the schedule) rotates the ticket.
	l.Sandbox.Clock().Advance(2 * time.Minute) // past the minimum interval
	if _, err := l.Refresher.RefreshTicket(context.Background(), "shop", ticket.JSAPI, old); err != nil {
		t.Fatal(err)
	}
	current := l.PublishedTicket("shop", ticket.JSAPI)
	cached, err := c.SignURL(context.Background(), page)
	if err != nil || cached.Signature != client.SignJSSDK(old, cached.NonceStr, cached.Timestamp, cached.URL) || l.sb.CheckTicket(appID, wechattest.TicketJSAPI, old) == 0 {
		t.Fatalf("setup: the cached ticket should sign and be ended at WeChat (%v)", err)
	}
	calls := l.sb.TicketRequests(appID, wechattest.TicketJSAPI)
	again, err := c.Resign(context.Background(), cached)
	if err != nil {
		t.Fatal(err)
	}
	if again.URL != first.URL || again.Signature != client.SignJSSDK(current, again.NonceStr, again.Timestamp, again.URL) {
		t.Errorf("Resign: %+v, want the URL signed with the published ticket", again)
	}
	if n := l.sb.TicketRequests(appID, wechattest.TicketJSAPI) - calls; n != 0 {
		t.Errorf("Resign made %d ticket calls, want 0 (the published ticket answers the claim)", n)
	}
	if sig, err := c.SignURL(context.Background(), page); err != nil || sig.Signature != client.SignJSSDK(current, sig.NonceStr, sig.Timestamp, sig.URL) {
		t.Errorf("SignURL after Resign: %v, want the new ticket from the cache", err)
	}
	if raw, _ := json.Marshal(again); strings.Contains(string(raw), current) || strings.Contains(fmt.Sprintf("%+v %#v", again, again), current) {
		t.Error("the signature's JSON or its printed form carries the ticket")
	}

	// The page's report as it comes back (a JSON round trip: the ticket is
	// not in it), from a process whose cache still holds the ended ticket.
	other := l.client("shop", nil)
	stale, err := other.SignURL(context.Background(), page)
	if err != nil {
		t.Fatal(err)
	}
	l.Sandbox.Clock().Advance(2 * time.Minute)
	if _, err := l.Refresher.RefreshTicket(context.Background(), "shop", ticket.JSAPI, current); err != nil {
		t.Fatal(err)
	}
	newest := l.PublishedTicket("shop", ticket.JSAPI)
	raw, _ := json.Marshal(stale)
	var reported client.JSSDKSignature
	if err := json.Unmarshal(raw, &reported); err != nil {
		t.Fatal(err)
	}
	calls = l.sb.TicketRequests(appID, wechattest.TicketJSAPI)
	fixed, err := other.Resign(context.Background(), reported)
	if err != nil || fixed.Signature != client.SignJSSDK(newest, fixed.NonceStr, fixed.Timestamp, fixed.URL) {
		t.Errorf("Resign of a reported signature: %v, want the URL signed with the newest ticket", err)
	}
	if n := l.sb.TicketRequests(appID, wechattest.TicketJSAPI) - calls; n != 0 {
		t.Errorf("Resign of a reported signature made %d ticket calls, want 0", n)
	}
}

// TestResignAnsweredWithTheSameTicket: when wxtoken answers a claim with
// the rejected ticket itself (WeChat extends the same ticket), Resign says
// so and signs nothing.
func TestResignAnsweredWithTheSameTicket(t *testing.T) {
	app := shop()
	app.Tickets = registry.TicketSetOf(ticket.JSAPI)
	l := newLocal(t, app) // TicketSame: a ticket call answers the same ticket
	l.PublishTicket("shop", ticket.JSAPI)
	c := l.client("shop", nil)
	sig, err := c.SignURL(context.Background(), "https://shop.example/")
	if err != nil {
		t.Fatal(err)
	}
	l.Sandbox.Clock().Advance(2 * time.Minute)
	got, err := c.Resign(context.Background(), sig)
	if err == nil || got.Signature != "" {
		t.Errorf("Resign: %+v, %v; want no signature and an error", got, err)
	}
}
