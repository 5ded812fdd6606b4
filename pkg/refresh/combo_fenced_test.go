package refresh_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
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

// Found in review: when the sealed token is published but recording its
// version fails, the run does not take the app for unpublished and fetch
// another (in classic mode that would end the token it just published).
func TestSealedTokenPublishedButUnconfirmedIsNotFetchedAgain(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	publish(t, b, a.Name)
	var failPut, failConfirm atomic.Bool
	b.fakes.store.SetFault(func(op tokenstoretest.Op, _ string) tokenstoretest.Fault {
		if op == tokenstoretest.OpPut && failPut.Load() {
			return tokenstoretest.Fault{Err: tokenstoretest.Throttled()}
		}
		return tokenstoretest.Fault{}
	})
	b.fakes.leases.SetFault(func(op leasetest.Op, _ string) leasetest.Fault {
		if op == leasetest.OpConfirm && failConfirm.Load() {
			return leasetest.Fault{Err: leasetest.Throttled()}
		}
		return leasetest.Fault{}
	})
	sched := b.refresher("scheduler")
	b.sb.Clock().Advance(101 * time.Minute)
	failPut.Store(true)
	mustRefreshDue(t, sched) // fetches T2, cannot publish it
	issued := b.sb.TokensIssued(a.AppID)
	failPut.Store(false)
	failConfirm.Store(true)
	b.sb.Clock().Advance(time.Minute)
	mustRefreshDue(t, sched) // publishes T2, cannot record its version
	if n := b.sb.TokensIssued(a.AppID); n != issued {
		t.Errorf("%d more tokens issued after the sealed token was published, want 0", n-issued)
	}
	t2, _ := b.published(a.Name)
	if b.sb.Check(t2) != 0 {
		t.Error("the published token is not valid")
	}
	failConfirm.Store(false)
	b.sb.Clock().Advance(time.Minute)
	mustRefreshDue(t, sched)
	if st := b.state(a.Name); st.Version == 0 || st.Pending != "" {
		t.Errorf("the next run did not record the version (version %d, pending kept %v)", st.Version, st.Pending != "")
	}
	if n := b.sb.TokensIssued(a.AppID); n != issued {
		t.Errorf("%d more tokens issued in all, want 0", n-issued)
	}
}
