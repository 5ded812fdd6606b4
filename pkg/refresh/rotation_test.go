package refresh_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// metaStore is the part of the token store that reads a credential's
// rotation meta (both *tokenstore.Store and the fake have it).
type metaStore interface {
	GetMeta(ctx context.Context, key string) (rotation.Meta, error)
}

// TestRotationMetaIsPublished: every value wxtoken publishes has its
// rotation meta beside it, describing its Version, its expiry and when the
// schedule replaces it (the schedule's own due rule: RefreshMargin before
// the expiry, stable mode inside the final window less its slack); the
// API's answers carry the same RotatesAt; and a ticket WeChat extends gets
// a new meta for the same version.
func TestRotationMetaIsPublished(t *testing.T) {
	tests := []struct {
		name   string
		app    registry.App
		key    string
		before time.Duration // RotatesAt is this long before the expiry
	}{
		{"classic token", appNamed("shop", registry.OfficialAccount, registry.Classic), "shop", registry.DefaultRefreshMargin},
		{"stable token", appNamed("shop", registry.OfficialAccount, registry.Stable), "shop", refresh.DefaultStableWindow - refresh.DefaultStableSlack},
		{"WeCom token", appNamed("corp", registry.WeCom, registry.GetToken), "corp", registry.DefaultRefreshMargin},
		{"jsapi ticket", withTickets(appNamed("shop", registry.OfficialAccount, registry.Stable), registry.TicketJSAPI), "shop#jsapi", registry.DefaultRefreshMargin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBed(t, wechattest.Config{TicketRotation: wechattest.TicketSame})
			a := b.app(tt.app)
			publish(t, b, a.Name)
			ms := b.tokens().(metaStore)
			check := func(when string) rotation.Meta {
				t.Helper()
				_, v := b.published(tt.key)
				st := b.state(tt.key)
				m, err := ms.GetMeta(ctxT(t), tt.key)
				want := rotation.Meta{Version: v, ExpiresAt: st.ExpiresAt, RotatesAt: st.ExpiresAt.Add(-tt.before)}
				if err != nil || !m.ExpiresAt.Equal(want.ExpiresAt) || !m.RotatesAt.Equal(want.RotatesAt) || m.Version != want.Version {
					t.Fatalf("%s: meta %+v (%v), want %+v", when, m, err, want)
				}
				return m
			}
			first := check("after the first publish")

			// The API's answer says the same.
			var res refresh.Result
			var err error
			if c := registry.ParseCredentialKey(tt.key); c.Ticket != "" {
				res, err = b.refresher("api").RefreshTicket(ctxT(t), a.Name, c.Ticket, "")
			} else {
				res, err = b.refresher("api").Refresh(ctxT(t), a.Name, "")
			}
			if err != nil || !res.RotatesAt.Equal(first.RotatesAt) {
				t.Fatalf("Refresh: RotatesAt %v (%v), want %v", res.RotatesAt, err, first.RotatesAt)
			}

			// The schedule's next rotation: at RotatesAt (the sweep's
			// tick), a new value or, for a ticket WeChat extends, the same
			// version with a new life.
			b.sb.Clock().Set(first.RotatesAt)
			mustRefreshDue(t, b.refresher("cron"))
			next := check("after the planned rotation")
			if !next.RotatesAt.After(first.RotatesAt) {
				t.Errorf("the rotation's meta still says %v", next.RotatesAt)
			}
		})
	}
}

// TestRotationMetaFailureIsNoRefreshFailure: SSM refusing the meta leaves
// the new token published and the refresh a success (consumers then read
// every minute); the next publish writes the meta again.
func TestRotationMetaFailureIsNoRefreshFailure(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	failMeta(b)
	tok := publish(t, b, a.Name)
	if _, err := b.fakes.store.GetMeta(ctxT(t), a.Name); err == nil {
		t.Fatal("a meta was published through the fault")
	}
	if !b.logged("could not publish the rotation meta") {
		t.Error("the meta's failure is not logged")
	}
	b.fakes.store.SetFault(nil)
	b.sb.Clock().Advance(2 * time.Minute)
	b.sb.Revoke(a.AppID)
	res, err := b.refresher("api").Refresh(ctxT(t), a.Name, tok)
	if err != nil || res.Token == tok {
		t.Fatalf("refresh after the fault: %v", err)
	}
	if m, err := b.fakes.store.GetMeta(ctxT(t), a.Name); err != nil || m.Version != res.Version {
		t.Errorf("meta after the next publish: %+v, %v; want version %d", m, err, res.Version)
	}
}

// withTickets is a with its tickets ts.
func withTickets(a registry.App, ts ...registry.Ticket) registry.App {
	a.Tickets = registry.TicketSetOf(ts...)
	return a
}

// TestRotationMetaOfAnUnrecordedPublish: a publish whose meta and version
// record were both lost (the function died after PutParameter) gets its
// meta when the next holder confirms the publish.
func TestRotationMetaOfAnUnrecordedPublish(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	failMeta(b)
	b.fakes.leases.SetFault(func(op leasetest.Op, _ string) leasetest.Fault {
		if op == leasetest.OpConfirm {
			return leasetest.Fault{Err: errors.New("injected: the function died")}
		}
		return leasetest.Fault{}
	})
	publish(t, b, a.Name)
	if st := b.state(a.Name); st.Version != 0 {
		t.Fatalf("the publish was recorded (version %d); the test needs it unrecorded", st.Version)
	}
	b.fakes.store.SetFault(nil)
	b.fakes.leases.SetFault(nil)
	mustRefreshDue(t, b.refresher("cron"))
	_, v := b.published(a.Name)
	if m, err := b.fakes.store.GetMeta(ctxT(t), a.Name); err != nil || m.Version != v {
		t.Errorf("meta after the publish was confirmed: %+v, %v; want version %d", m, err, v)
	}
}

// failMeta makes the fake store refuse every rotation meta (throttled).
func failMeta(b *bed) {
	b.fakes.store.SetFault(func(op tokenstoretest.Op, _ string) tokenstoretest.Fault {
		if op == tokenstoretest.OpPutMeta {
			return tokenstoretest.Fault{Err: tokenstoretest.Throttled()}
		}
		return tokenstoretest.Fault{}
	})
}
