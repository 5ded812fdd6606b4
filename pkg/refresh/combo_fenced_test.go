package refresh_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

type fencedOnce struct {
	*leasetest.Fake
	fence bool
}

func (f *fencedOnce) Commit(ctx context.Context, app, owner string, fromGen int64, now time.Time, c lease.Commit) error {
	if f.fence {
		f.fence = false
		return fmt.Errorf("lease: commit %s: %w", app, lease.ErrFenced)
	}
	return f.Fake.Commit(ctx, app, owner, fromGen, now, c)
}

// Found in review: a fenced commit of a classic token still records the call
// and superseded_at, so the schedule refreshes before the published token,
// ended by the dropped one, dies.
func TestFencedCommitRecordsTheCallAndTheSupersede(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	t1 := publish(t, b, a.Name)
	before := b.state(a.Name)
	fl := &fencedOnce{Fake: b.fakes.leases, fence: true}
	op := b.refresher("op", func(r *refresh.Refresher) { r.Leases = fl })
	b.sb.Clock().Advance(10 * time.Minute)
	if _, err := op.ForceRefresh(ctxT(t), a.Name); err == nil {
		t.Fatal("setup: want the fenced error")
	}
	st := b.state(a.Name)
	if st.CallsToday == before.CallsToday {
		t.Errorf("calls_today %d: the WeChat call of the fenced commit was not counted", st.CallsToday)
	}
	b.sb.Clock().Advance(6 * time.Minute)
	if b.sb.Check(t1) == 0 {
		t.Fatal("setup: T1 still valid")
	}
	rep := mustRefreshDue(t, b.refresher("sched"))
	if tok, _ := b.published(a.Name); b.sb.Check(tok) != 0 {
		t.Errorf("after the run (%s) SSM holds a token WeChat rejects: superseded_at not recorded", outcomeOf(rep, a.Name))
	}
	b.saw(t1)
}
