package refresh_test

import (
	"testing"
	"time"

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
