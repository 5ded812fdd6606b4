package refresh_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// TestStatusAndEvents follows an app through the status route's view and
// the events metrics are made from: before any token, after a refresh, after
// WeChat refused, and for an unknown app.
func TestStatusAndEvents(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	var mu sync.Mutex
	var evs []refresh.Event
	r := b.refresher("api", func(r *refresh.Refresher) {
		r.Observe = func(_ context.Context, ev refresh.Event) {
			mu.Lock()
			defer mu.Unlock()
			evs = append(evs, ev)
		}
	})
	last := func() refresh.Event {
		mu.Lock()
		defer mu.Unlock()
		if len(evs) == 0 {
			t.Fatal("no event observed")
		}
		return evs[len(evs)-1]
	}

	st, err := r.Status(ctxT(t), a.Name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 0 || st.Published || st.Generation != 0 || st.AppID != a.AppID || st.Mode != "classic" || st.DailyBudget != registry.DefaultClassicBudget {
		t.Errorf("status before any token: %+v", st)
	}

	// A scheduled run with a Lambda-like deadline (the template's 50 s,
	// under the 60 s lease) still refreshes rather than defers.
	runCtx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	rep, err := r.RefreshDue(runCtx)
	if err != nil || rep.Count("refreshed") != 1 {
		t.Fatalf("scheduled run under a 50 s deadline: %+v %v, want the app refreshed", rep.Outcomes, err)
	}
	if ev := last(); ev.Outcome != refresh.OutcomeRefreshed || ev.Reason != "scheduled" || ev.CallsToday != 1 || ev.App != a.Name {
		t.Errorf("event %+v, want refreshed (scheduled) with 1 call today", ev)
	}

	res, err := r.Refresh(ctxT(t), a.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	b.saw(res.Token)
	if ev := last(); ev.Outcome != refresh.OutcomeServed || ev.Reason != "ensure" {
		t.Errorf("event %+v, want served (ensure)", ev)
	}
	st, err = r.Status(ctxT(t), a.Name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 1 || !st.Published || st.Generation != 1 || st.Fingerprint != wechat.Fingerprint(res.Token) ||
		!st.ExpiresAt.Equal(res.ExpiresAt) || st.CallsToday != 1 || st.LastError != "" {
		t.Errorf("status after a refresh: %+v", st)
	}

	if _, err := r.Refresh(ctxT(t), a.Name, "not-the-published-token"); err != nil {
		t.Fatal(err)
	}
	if ev := last(); ev.Outcome != refresh.OutcomeServed {
		t.Errorf("event %+v, want served", ev)
	}

	b.sb.Inject(wechattest.Fault{Path: wechattest.PathToken, ErrCode: 40164, ErrMsg: "invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist rid: 6565-1"})
	if _, err := r.ForceRefresh(ctxT(t), a.Name); err == nil {
		t.Fatal("ForceRefresh succeeded through a 40164")
	}
	if ev := last(); ev.Outcome != refresh.OutcomeFailed || ev.ErrCode != 40164 || ev.Class != "config" || !ev.Failure() {
		t.Errorf("event %+v, want failed with 40164 (config)", ev)
	}
	st, err = r.Status(ctxT(t), a.Name)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastErrCode != 40164 || st.ErrorClass != "config" || st.LastErrorAt.IsZero() || st.BlockedUntil.IsZero() ||
		st.CallsToday != 2 || !st.Published || st.Version != 1 {
		t.Errorf("status after WeChat refused: %+v", st)
	}

	// Every scheduled run reports the paused app as blocked, with the errcode,
	// so that what needs a person keeps saying so until fixed.
	for range 2 {
		rep := mustRefreshDue(t, r)
		var refused *refresh.RefusedError
		if len(rep.Outcomes) != 1 || rep.Outcomes[0].Status != "blocked" || !errors.As(rep.Outcomes[0].Err, &refused) ||
			refused.ErrCode != 40164 || refused.Class != "config" {
			t.Errorf("scheduled run while blocked: %+v, want blocked with 40164 (config)", rep.Outcomes)
		}
		b.sb.Clock().Advance(5 * time.Minute)
	}

	if _, err := r.Status(ctxT(t), "nobody"); !errors.Is(err, refresh.ErrUnknownApp) {
		t.Errorf("status of an unknown app: %v, want ErrUnknownApp", err)
	}
}
