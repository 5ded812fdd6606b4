package refresh_test

import (
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// Found in review: when SSM holds an out-of-order token and refuses the
// repair, callers get the committed token, not the one WeChat rejects.
func TestRefusedRepairServesTheCommittedToken(t *testing.T) {
	for _, stale := range []bool{true, false} {
		b := newFakeBed(t, wechattest.Config{})
		a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
		t1 := publish(t, b, a.Name)
		b.sb.Clock().Advance(101 * time.Minute)
		mustRefreshDue(t, b.refresher("s2"))
		t2, _ := b.published(a.Name)
		if _, err := b.fakes.store.Put(ctxT(t), a.Name, t1); err != nil { // late, out-of-order write
			t.Fatal(err)
		}
		b.sb.Clock().Advance(6 * time.Minute) // T1 superseded, past the grace
		b.fakes.store.SetFault(func(op tokenstoretest.Op, _ string) tokenstoretest.Fault {
			if op == tokenstoretest.OpPut {
				return tokenstoretest.Fault{Err: tokenstoretest.Throttled()}
			}
			return tokenstoretest.Fault{}
		})
		claim := ""
		if stale {
			claim = t1
		}
		res, err := b.refresher("api").Refresh(ctxT(t), a.Name, claim)
		if err == nil && b.sb.Check(res.Token) != 0 {
			t.Errorf("stale=%v: nil error with a token WeChat rejects (is T1 %v, is T2 %v, refreshed %v, version %d)",
				stale, res.Token == t1, res.Token == t2, res.Refreshed, res.Version)
		}
		b.saw(t1, t2)
	}
}

// Found by the model check (seeds 20261121878, 20261122171): an app re-pointed
// to another account gets the new account's token committed while SSM
// refuses the write, so SSM still holds the former account's token. A
// caller who claims an older token must not be handed SSM's (the former
// account's): design.md "Account changes". Likewise for a ticket.
func TestAccountChangeWithSSMRefusingServesNoFormerToken(t *testing.T) {
	for _, tc := range []struct {
		tk registry.Ticket
		// secretToo: the secret cannot be read either, so the holder
		// cannot open the seal (review: reconcile then gave SSM's value
		// back).
		secretToo bool
	}{{"", false}, {registry.TicketJSAPI, false}, {"", true}, {registry.TicketJSAPI, true}} {
		tk := tc.tk
		name := "token"
		if tk != "" {
			name = string(tk)
		}
		if tc.secretToo {
			name += ", secret unreadable"
		}
		t.Run(name, func(t *testing.T) {
			b := newFakeBed(t, wechattest.Config{})
			spec := appNamed("shop", registry.OfficialAccount, registry.Stable)
			spec.Tickets = registry.TicketSetOf(registry.TicketJSAPI)
			a := b.app(spec)
			get := func(r *refresh.Refresher, stale string) (refresh.Result, error) {
				if tk == "" {
					return r.Refresh(ctxT(t), a.Name, stale)
				}
				return r.RefreshTicket(ctxT(t), a.Name, tk, stale)
			}
			key := registry.Credential{App: a.Name, Ticket: tk}.Key()
			mustRefreshDue(t, b.refresher("s1"))
			former, _ := b.published(key)
			// Re-pointed to account B, with SSM refusing every write.
			other := appNamed("shop-b", registry.OfficialAccount, registry.Stable)
			b.sb.AddApp(wechattest.App{AppID: other.AppID, Secret: secretOf(other.Name), Kind: wechattest.OfficialAccount})
			moved := a
			moved.AppID = other.AppID
			b.putItem(moved)
			b.putSecret(a.Name, secretOf(other.Name))
			b.fakes.store.SetFault(func(op tokenstoretest.Op, _ string) tokenstoretest.Fault {
				if op == tokenstoretest.OpPut {
					return tokenstoretest.Fault{Err: tokenstoretest.Throttled()}
				}
				return tokenstoretest.Fault{}
			})
			mustRefreshDue(t, b.refresher("s2")) // commits B's, sealed: SSM refused it
			if pub, _ := b.published(key); pub != former {
				t.Fatalf("setup: SSM should still hold the former account's %s", name)
			}
			if tc.secretToo {
				b.fakes.store.SetFault(func(op tokenstoretest.Op, _ string) tokenstoretest.Fault {
					if op == tokenstoretest.OpPut || op == tokenstoretest.OpSecret {
						return tokenstoretest.Fault{Err: tokenstoretest.Throttled()}
					}
					return tokenstoretest.Fault{}
				})
			}
			ofB := func(v string) bool { // a valid token or ticket of account B
				if tk != "" {
					return b.sb.CheckTicket(other.AppID, wechattest.TicketJSAPI, v) == 0
				}
				tok, _ := b.sb.Current(other.AppID, apiOf(registry.Stable))
				return v == tok
			}
			for _, stale := range []string{"an-older-value", ""} {
				res, err := get(b.refresher("api"), stale)
				b.saw(res.Token)
				switch {
				case res.Token == former:
					t.Errorf("claim %q: answered with the former account's %s (fp %s), want account B's (error %v)", stale, name, fp(former), err)
				case err == nil && !tc.secretToo && !ofB(res.Token):
					t.Errorf("claim %q: answered fp %s, which is not account B's valid %s", stale, fp(res.Token), name)
				}
			}
		})
	}
}
