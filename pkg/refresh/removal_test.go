package refresh_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// An app removed (wxtoken apps remove) while a caller waited for another
// holder's lease is not fetched and published again by that caller when it
// takes the lease: the holder re-reads the registration under the lease.
func TestRemovedWhileWaitingIsNotPublished(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	a := b.app(registry.App{Name: "shop", AppID: "wx00000000000000c1", Kind: registry.OfficialAccount, Mode: registry.Classic})
	now := b.sb.Now()
	// Another instance holds the lease (a refresh in progress).
	if _, err := b.fakes.leases.Acquire(context.Background(), a.Name, "other", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	r := b.refresher("waiter")
	done := make(chan error, 1)
	go func() {
		_, err := r.Refresh(context.Background(), a.Name, "")
		done <- err
	}()
	// Once the caller is waiting (it polls the state), the operator removes
	// the app and the other holder gives the lease back.
	deadline := time.Now().Add(10 * time.Second)
	for b.fakes.leases.Calls(leasetest.OpGet) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the caller never waited for the lease")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.fakes.apps.Remove(a.Name)
	if err := b.fakes.leases.Release(context.Background(), a.Name, "other", now, lease.Fields{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, refresh.ErrUnknownApp) {
			t.Errorf("Refresh after the removal: %v, want ErrUnknownApp", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the caller did not finish")
	}
	if n := b.sb.TokenCalls(a.AppID); n != 0 {
		t.Errorf("WeChat token calls after the removal = %d, want 0", n)
	}
	if v, _ := b.fakes.store.Version(context.Background(), a.Name); v != 0 {
		t.Errorf("a token was published (version %d) for the removed app", v)
	}
}
