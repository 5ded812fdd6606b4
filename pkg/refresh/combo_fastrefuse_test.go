package refresh_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// Found in review: while SSM refuses writes and a sealed token is pending,
// no refusal is decided from SSM's (dead) token before the lease: the holder
// hands out the pending token without a WeChat call, budget or not.
func TestSealedTokenIsNotRefusedBeforeTheLease(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	app := appNamed("shop", registry.OfficialAccount, registry.Classic)
	app.DailyBudget = 4 // reserve 2: claims may spend 2
	a := b.app(app)
	t1 := publish(t, b, a.Name)
	var failing atomic.Bool
	b.fakes.store.SetFault(func(op tokenstoretest.Op, _ string) tokenstoretest.Fault {
		if op == tokenstoretest.OpPut && failing.Load() {
			return tokenstoretest.Fault{Err: tokenstoretest.Throttled()}
		}
		return tokenstoretest.Fault{}
	})
	b.sb.Clock().Advance(101 * time.Minute)
	failing.Store(true)
	mustRefreshDue(t, b.refresher("sched")) // T2 sealed, pending
	b.sb.Clock().Advance(6 * time.Minute)   // T1 dead
	res, err := b.refresher("api").Refresh(ctxT(t), a.Name, t1)
	var refused *refresh.RefusedError
	if errors.As(err, &refused) {
		t.Errorf("claim: refused (%s) with current valid=%v (is T1 %v); the holder would have served the pending token",
			refused.Reason, b.sb.Check(refused.Current.Token) == 0, refused.Current.Token == t1)
	} else if err != nil || b.sb.Check(res.Token) != 0 {
		t.Errorf("claim: %v, valid %v", err, b.sb.Check(res.Token) == 0)
	}
	b.saw(t1)
}
