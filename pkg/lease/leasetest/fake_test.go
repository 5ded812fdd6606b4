package leasetest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
)

// TestContract holds the fake to the lease table's semantics; the same suite
// runs against DynamoDB in package lease.
func TestContract(t *testing.T) {
	leasetest.Contract(t, func(*testing.T) leasetest.Leases { return leasetest.New() })
}

var t0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// TestFault checks the fault hook: an error before the operation writes
// nothing, an error after it (After) writes and still fails, and the errors
// carry the call's context and the sentinel the caller branches on.
func TestFault(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("connection reset")
	tests := []struct {
		name      string
		fault     leasetest.Fault
		wantErr   error
		wantOwner string
	}{
		{"none", leasetest.Fault{}, nil, "a"},
		{"throttled before the write", leasetest.Fault{Err: leasetest.Throttled()}, lease.ErrUnavailable, ""},
		{"answer lost after the write", leasetest.Fault{Err: boom, After: true}, boom, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := leasetest.New()
			var gotOp leasetest.Op
			var gotApp string
			f.SetFault(func(op leasetest.Op, app string) leasetest.Fault {
				if op != leasetest.OpAcquire {
					return leasetest.Fault{}
				}
				gotOp, gotApp = op, app
				return tt.fault
			})
			_, err := f.Acquire(ctx, "shop", "a", t0, t0.Add(time.Minute))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Acquire: %v, want %v", err, tt.wantErr)
			}
			if gotOp != leasetest.OpAcquire || gotApp != "shop" {
				t.Errorf("hook saw (%s, %s), want (Acquire, shop)", gotOp, gotApp)
			}
			st, err := f.Get(ctx, "shop")
			if err != nil || st.LeaseOwner != tt.wantOwner {
				t.Errorf("after the call: owner %q (error %v), want %q", st.LeaseOwner, err, tt.wantOwner)
			}
		})
	}
}

// TestFaultHookMayCallTheFake lets a rival take the lease while a Commit is
// on its way: the hook runs without the fake's lock.
func TestFaultHookMayCallTheFake(t *testing.T) {
	ctx := context.Background()
	f := leasetest.New()
	if _, err := f.Acquire(ctx, "shop", "a", t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.SetFault(func(op leasetest.Op, app string) leasetest.Fault {
		if op == leasetest.OpCommit {
			if _, err := f.Acquire(ctx, app, "b", t0.Add(time.Minute), t0.Add(2*time.Minute)); err != nil {
				t.Errorf("rival Acquire: %v", err)
			}
		}
		return leasetest.Fault{}
	})
	err := f.Commit(ctx, "shop", "a", 0, t0.Add(time.Second), lease.Commit{Fingerprint: "fp", Mode: "stable"})
	if !errors.Is(err, lease.ErrFenced) {
		t.Errorf("Commit after a takeover: %v, want ErrFenced", err)
	}
}

// TestCalls counts every call, whatever its outcome.
func TestCalls(t *testing.T) {
	ctx := context.Background()
	f := leasetest.New()
	f.SetFault(func(op leasetest.Op, _ string) leasetest.Fault {
		if op == leasetest.OpList {
			return leasetest.Fault{Err: leasetest.Throttled()}
		}
		return leasetest.Fault{}
	})
	_, _ = f.Get(ctx, "a")
	_, _ = f.Get(ctx, "b")
	_, _ = f.List(ctx)
	_ = f.Confirm(ctx, "a", 1, 1, t0) // fenced
	for op, want := range map[leasetest.Op]int{leasetest.OpGet: 2, leasetest.OpList: 1, leasetest.OpConfirm: 1, leasetest.OpCommit: 0} {
		if got := f.Calls(op); got != want {
			t.Errorf("Calls(%s) = %d, want %d", op, got, want)
		}
	}
}
