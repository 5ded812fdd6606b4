package leasetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
)

// Leases is the method set of *lease.Table, which Fake shares; Contract
// checks an implementation of it.
type Leases interface {
	Get(ctx context.Context, app string) (lease.State, error)
	Acquire(ctx context.Context, app, owner string, now, until time.Time) (lease.State, error)
	Commit(ctx context.Context, app, owner string, fromGen int64, now time.Time, c lease.Commit) error
	Confirm(ctx context.Context, app string, gen, version int64, now time.Time) error
	Release(ctx context.Context, app, owner string, now time.Time, f lease.Fields) error
	Expire(ctx context.Context, app string, now, at time.Time) error
	List(ctx context.Context) ([]lease.State, error)
}

var (
	_ Leases = (*lease.Table)(nil)
	_ Leases = (*Fake)(nil)
)

// t0 has sub-millisecond digits and a zone other than UTC, so that every
// case also checks how times are stored: Unix milliseconds, read back in UTC.
var t0 = time.Date(2031, 5, 6, 7, 8, 9, 123_456_789, time.FixedZone("CST", 8*3600))

func at(d time.Duration) time.Time { return t0.Add(d) }

// stored is t as the table gives it back: truncated to the millisecond, UTC.
func stored(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

func ptr[T any](v T) *T { return &v }

// contractCase is one behaviour of a lease table; run gets a fresh, empty
// table.
type contractCase struct {
	name string
	run  func(t *testing.T, ctx context.Context, l Leases)
}

// Contract runs the lease table's semantics against the tables newLeases
// returns, one fresh and empty table per subtest: the lease's conditional
// writes, generation fencing, Confirm, Release, the Fields' set/clear/keep
// rules, the cleanup TTL, List, and how times are stored. Run it against
// *lease.Table on DynamoDB and against Fake, so that the fake cannot drift
// from the engine.
func Contract(t *testing.T, newLeases func(t *testing.T) Leases) {
	t.Helper()
	for _, c := range contractCases() {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c.run(t, ctx, newLeases(t))
		})
	}
}

func contractCases() []contractCase {
	return []contractCase{
		{"Get of an unknown app is the zero State with App set", func(t *testing.T, ctx context.Context, l Leases) {
			wantState(t, ctx, l, lease.State{App: "shop"})
		}},
		{"Acquire of a new app takes the lease", func(t *testing.T, ctx context.Context, l Leases) {
			got, err := l.Acquire(ctx, "shop", "a", at(0), at(time.Minute))
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			want := lease.State{App: "shop", LeaseOwner: "a", LeaseUntil: stored(at(time.Minute)), UpdatedAt: stored(at(0))}
			if d := diff(got, want); d != "" {
				t.Errorf("Acquire returned %s", d)
			}
			wantState(t, ctx, l, want)
		}},
		{"Acquire while held returns ErrHeld and the holder's state", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			commit(t, ctx, l, "shop", "a", 0, at(time.Second), lease.Commit{Fingerprint: "fp1", Mode: "stable"})
			holder := get(t, ctx, l, "shop")
			for _, rival := range []string{"b", "a"} { // not reentrant: the holder itself is refused too
				got, err := l.Acquire(ctx, "shop", rival, at(59*time.Second), at(2*time.Minute))
				if !errors.Is(err, lease.ErrHeld) {
					t.Fatalf("Acquire by %s while held: %v, want ErrHeld", rival, err)
				}
				if d := diff(got, holder); d != "" {
					t.Errorf("Acquire by %s returned %s", rival, d)
				}
			}
			wantState(t, ctx, l, holder)
		}},
		{"Acquire at lease_until or later takes over", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			// lease_until <= now: the lease ends at its instant.
			acquire(t, ctx, l, "shop", "b", at(time.Minute), at(2*time.Minute))
			acquire(t, ctx, l, "shop", "c", at(3*time.Minute), at(4*time.Minute))
			if got := get(t, ctx, l, "shop"); got.LeaseOwner != "c" || !got.LeaseUntil.Equal(stored(at(4*time.Minute))) {
				t.Errorf("lease %s until %v, want c until %v", got.LeaseOwner, got.LeaseUntil, stored(at(4*time.Minute)))
			}
		}},
		{"Acquire after Release", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			release(t, ctx, l, "shop", "a", at(time.Second), lease.Fields{})
			acquire(t, ctx, l, "shop", "b", at(2*time.Second), at(time.Minute))
		}},
		{"concurrent Acquires: exactly one wins", func(t *testing.T, ctx context.Context, l Leases) {
			const n = 8
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = l.Acquire(ctx, "shop", fmt.Sprintf("owner-%d", i), at(0), at(time.Minute))
				}()
			}
			wg.Wait()
			won := 0
			for i, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, lease.ErrHeld):
					t.Errorf("owner-%d: %v, want nil or ErrHeld", i, err)
				}
			}
			if won != 1 {
				t.Errorf("%d owners took the lease, want 1", won)
			}
		}},
		{"Commit by the holder records the token", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			commit(t, ctx, l, "shop", "a", 0, at(time.Second), lease.Commit{
				Fingerprint: "fp1", Mode: "stable", AppID: "wx1", Kind: "offiaccount", Pending: "sealed-1",
				FetchedAt: at(500 * time.Millisecond), ExpiresAt: at(2 * time.Hour),
			})
			wantState(t, ctx, l, lease.State{
				App: "shop", Generation: 1, Version: 0, Fingerprint: "fp1", Mode: "stable", AppID: "wx1", Kind: "offiaccount",
				Pending: "sealed-1", FetchedAt: stored(at(500 * time.Millisecond)), ExpiresAt: stored(at(2 * time.Hour)),
				LeaseOwner: "a", LeaseUntil: stored(at(time.Minute)), UpdatedAt: stored(at(time.Second)),
			})
			commit(t, ctx, l, "shop", "a", 1, at(2*time.Second), lease.Commit{Fingerprint: "fp2", Mode: "classic"})
			if got := get(t, ctx, l, "shop"); got.Generation != 2 || got.Fingerprint != "fp2" || got.Mode != "classic" {
				t.Errorf("after the second Commit: generation %d fingerprint %q mode %q, want 2 fp2 classic", got.Generation, got.Fingerprint, got.Mode)
			}
		}},
		{"Commit is fenced without the lease", func(t *testing.T, ctx context.Context, l Leases) {
			fenced := []struct {
				name  string
				setup func(t *testing.T, app string)
				now   time.Time
			}{
				{"no item", func(*testing.T, string) {}, at(0)},
				{"never leased", func(t *testing.T, app string) { expire(t, ctx, l, app, at(0), at(time.Hour)) }, at(time.Second)},
				{"another owner's lease", func(t *testing.T, app string) { acquire(t, ctx, l, app, "b", at(0), at(time.Minute)) }, at(time.Second)},
				{"own lease at its expiry", func(t *testing.T, app string) { acquire(t, ctx, l, app, "a", at(0), at(time.Minute)) }, at(time.Minute)},
				{"own lease expired", func(t *testing.T, app string) { acquire(t, ctx, l, app, "a", at(0), at(time.Minute)) }, at(2 * time.Minute)},
				{"own lease released", func(t *testing.T, app string) {
					acquire(t, ctx, l, app, "a", at(0), at(time.Minute))
					release(t, ctx, l, app, "a", at(time.Second), lease.Fields{})
				}, at(2 * time.Second)},
			}
			for i, tt := range fenced {
				t.Run(tt.name, func(t *testing.T) {
					app := fmt.Sprintf("app-%d", i) // the cases share the table
					tt.setup(t, app)
					before := get(t, ctx, l, app)
					err := l.Commit(ctx, app, "a", 0, tt.now, lease.Commit{Fingerprint: "late", Mode: "stable", Pending: "sealed"})
					if !errors.Is(err, lease.ErrFenced) {
						t.Fatalf("Commit: %v, want ErrFenced", err)
					}
					wantState(t, ctx, l, before)
				})
			}
		}},
		{"Commit is fenced by the generation", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			commit(t, ctx, l, "shop", "a", 0, at(time.Second), lease.Commit{Fingerprint: "fp1", Mode: "stable"})
			before := get(t, ctx, l, "shop")
			for _, from := range []int64{0, 2, 5} {
				err := l.Commit(ctx, "shop", "a", from, at(2*time.Second), lease.Commit{Fingerprint: "stale", Mode: "stable"})
				if !errors.Is(err, lease.ErrFenced) {
					t.Errorf("Commit from generation %d at generation 1: %v, want ErrFenced", from, err)
				}
			}
			wantState(t, ctx, l, before)
		}},
		{"a holder that stalled past its lease is fenced after a takeover", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			acquire(t, ctx, l, "shop", "b", at(time.Minute), at(2*time.Minute))
			commit(t, ctx, l, "shop", "b", 0, at(61*time.Second), lease.Commit{Fingerprint: "fp-b", Mode: "stable"})
			if err := l.Commit(ctx, "shop", "a", 0, at(30*time.Second), lease.Commit{Fingerprint: "fp-a", Mode: "stable"}); !errors.Is(err, lease.ErrFenced) {
				t.Fatalf("stalled holder's Commit (clock behind): %v, want ErrFenced", err)
			}
			if got := get(t, ctx, l, "shop"); got.Fingerprint != "fp-b" || got.Generation != 1 {
				t.Errorf("fingerprint %q generation %d, want fp-b 1", got.Fingerprint, got.Generation)
			}
		}},
		{"Commit without Pending removes it; without AppID and Kind keeps them", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			commit(t, ctx, l, "shop", "a", 0, at(time.Second), lease.Commit{Fingerprint: "fp1", Mode: "stable", AppID: "wx1", Kind: "miniprogram", Pending: "sealed-1"})
			commit(t, ctx, l, "shop", "a", 1, at(2*time.Second), lease.Commit{Fingerprint: "fp2", Mode: "stable"})
			got := get(t, ctx, l, "shop")
			if got.Pending != "" || got.AppID != "wx1" || got.Kind != "miniprogram" {
				t.Errorf("pending %q appid %q kind %q, want none, wx1, miniprogram", got.Pending, got.AppID, got.Kind)
			}
			commit(t, ctx, l, "shop", "a", 2, at(3*time.Second), lease.Commit{Fingerprint: "fp3", Mode: "wecom", AppID: "ww2", Kind: "wecom"})
			if got := get(t, ctx, l, "shop"); got.AppID != "ww2" || got.Kind != "wecom" {
				t.Errorf("appid %q kind %q, want ww2 wecom", got.AppID, got.Kind)
			}
		}},
		{"pending is kept until Confirm, which records the version", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			commit(t, ctx, l, "shop", "a", 0, at(time.Second), lease.Commit{Fingerprint: "fp1", Mode: "stable", Pending: "sealed-1"})
			release(t, ctx, l, "shop", "a", at(2*time.Second), lease.Fields{})
			want := get(t, ctx, l, "shop")
			if want.Pending != "sealed-1" || want.Version != 0 {
				t.Fatalf("after Release: pending %q version %d, want sealed-1 0", want.Pending, want.Version)
			}
			if err := l.Confirm(ctx, "shop", 1, 7, at(3*time.Second)); err != nil {
				t.Fatalf("Confirm: %v", err)
			}
			want.Pending, want.Version, want.UpdatedAt = "", 7, stored(at(3*time.Second))
			wantState(t, ctx, l, want)
		}},
		{"Confirm is fenced by the generation", func(t *testing.T, ctx context.Context, l Leases) {
			if err := l.Confirm(ctx, "shop", 0, 1, at(0)); !errors.Is(err, lease.ErrFenced) {
				t.Errorf("Confirm of an unknown app: %v, want ErrFenced", err)
			}
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			commit(t, ctx, l, "shop", "a", 0, at(time.Second), lease.Commit{Fingerprint: "fp1", Mode: "stable", Pending: "sealed-1"})
			commit(t, ctx, l, "shop", "a", 1, at(2*time.Second), lease.Commit{Fingerprint: "fp2", Mode: "stable", Pending: "sealed-2"})
			before := get(t, ctx, l, "shop")
			for _, gen := range []int64{0, 1, 3} {
				if err := l.Confirm(ctx, "shop", gen, 5, at(3*time.Second)); !errors.Is(err, lease.ErrFenced) {
					t.Errorf("Confirm of generation %d at generation 2: %v, want ErrFenced", gen, err)
				}
			}
			wantState(t, ctx, l, before)
		}},
		{"Release by the holder removes the lease and writes the fields", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			release(t, ctx, l, "shop", "a", at(time.Second), lease.Fields{LastError: ptr("boom"), LastErrCode: ptr(-1)})
			wantState(t, ctx, l, lease.State{App: "shop", LastError: "boom", LastErrCode: -1, UpdatedAt: stored(at(time.Second))})
		}},
		{"Release of an expired but untaken lease succeeds", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			release(t, ctx, l, "shop", "a", at(time.Hour), lease.Fields{})
			if got := get(t, ctx, l, "shop"); got.LeaseOwner != "" || !got.LeaseUntil.IsZero() {
				t.Errorf("lease %q until %v after Release, want none", got.LeaseOwner, got.LeaseUntil)
			}
		}},
		{"Release by a non-owner is fenced and writes nothing", func(t *testing.T, ctx context.Context, l Leases) {
			if err := l.Release(ctx, "shop", "a", at(0), lease.Fields{LastError: ptr("x")}); !errors.Is(err, lease.ErrFenced) {
				t.Errorf("Release of an unknown app: %v, want ErrFenced", err)
			}
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			acquire(t, ctx, l, "shop", "b", at(2*time.Minute), at(3*time.Minute))
			before := get(t, ctx, l, "shop")
			for _, owner := range []string{"a", "c"} {
				err := l.Release(ctx, "shop", owner, at(150*time.Second), lease.Fields{LastError: ptr("late"), CallsToday: ptr(9), ClearBlocks: true})
				if !errors.Is(err, lease.ErrFenced) {
					t.Errorf("Release by %s: %v, want ErrFenced", owner, err)
				}
			}
			wantState(t, ctx, l, before)
		}},
		{"Fields", func(t *testing.T, ctx context.Context, l Leases) {
			base := lease.Fields{
				LastError: ptr("quota"), LastErrCode: ptr(45009), LastErrorClass: ptr("quota"), LastErrorAt: at(time.Second),
				BlockedUntil: ptr(at(time.Hour)), ForceBlockedUntil: ptr(at(2 * time.Hour)), BlockedSecretVersion: ptr(int64(3)),
				CallsDay: ptr("2031-05-06"), CallsToday: ptr(4), LastOnDemandAt: at(2 * time.Second),
				VerifiedFP: ptr("fpv"), VerifiedAt: at(3 * time.Second), DriftCount: ptr(2), LastDriftAt: at(4 * time.Second), SupersededAt: at(5 * time.Second),
			}
			full := lease.State{
				App: "shop", LastError: "quota", LastErrCode: 45009, LastErrorClass: "quota", LastErrorAt: stored(at(time.Second)),
				BlockedUntil: stored(at(time.Hour)), ForceBlockedUntil: stored(at(2 * time.Hour)), BlockedSecretVersion: 3,
				CallsDay: "2031-05-06", CallsToday: 4, LastOnDemandAt: stored(at(2 * time.Second)),
				VerifiedFP: "fpv", VerifiedAt: stored(at(3 * time.Second)), DriftCount: 2, LastDriftAt: stored(at(4 * time.Second)), SupersededAt: stored(at(5 * time.Second)),
				UpdatedAt: stored(at(10 * time.Second)),
			}
			cases := []struct {
				name   string
				fields lease.Fields
				want   func(s *lease.State)
			}{
				{"zero Fields keep everything", lease.Fields{}, func(*lease.State) {}},
				{"ClearError removes the last error only", lease.Fields{ClearError: true}, func(s *lease.State) {
					s.LastError, s.LastErrCode, s.LastErrorClass, s.LastErrorAt = "", 0, "", time.Time{}
				}},
				{"ClearBlocks removes every pause only", lease.Fields{ClearBlocks: true}, func(s *lease.State) {
					s.BlockedUntil, s.ForceBlockedUntil, s.BlockedSecretVersion = time.Time{}, time.Time{}, 0
				}},
				{"set values replace", lease.Fields{LastErrCode: ptr(0), CallsToday: ptr(0), CallsDay: ptr(""), BlockedUntil: ptr(at(5 * time.Hour))}, func(s *lease.State) {
					s.LastErrCode, s.CallsToday, s.CallsDay, s.BlockedUntil = 0, 0, "", stored(at(5*time.Hour))
				}},
				{"ClearError and ClearBlocks with other fields", lease.Fields{ClearError: true, ClearBlocks: true, DriftCount: ptr(3), VerifiedAt: at(6 * time.Second)}, func(s *lease.State) {
					s.LastError, s.LastErrCode, s.LastErrorClass, s.LastErrorAt = "", 0, "", time.Time{}
					s.BlockedUntil, s.ForceBlockedUntil, s.BlockedSecretVersion = time.Time{}, time.Time{}, 0
					s.DriftCount, s.VerifiedAt = 3, stored(at(6*time.Second))
				}},
			}
			for i, tt := range cases {
				t.Run(tt.name, func(t *testing.T) {
					for _, via := range []string{"Release", "Commit"} {
						t.Run(via, func(t *testing.T) {
							app := fmt.Sprintf("app-%d-%s", i, strings.ToLower(via)) // the cases share the table
							acquire(t, ctx, l, app, "a", at(0), at(time.Minute))
							release(t, ctx, l, app, "a", at(10*time.Second), base)
							want := full
							want.App = app
							wantState(t, ctx, l, want)
							acquire(t, ctx, l, app, "a", at(20*time.Second), at(time.Minute))
							if via == "Release" {
								release(t, ctx, l, app, "a", at(30*time.Second), tt.fields)
							} else {
								commit(t, ctx, l, app, "a", 0, at(30*time.Second), lease.Commit{Fingerprint: "fp", Mode: "stable", Fields: tt.fields})
								want.LeaseOwner, want.LeaseUntil = "a", stored(at(time.Minute))
								want.Generation, want.Fingerprint, want.Mode = 1, "fp", "stable"
								want.FetchedAt, want.ExpiresAt = stored(time.Time{}), stored(time.Time{})
							}
							want.UpdatedAt = stored(at(30 * time.Second))
							tt.want(&want)
							wantState(t, ctx, l, want)
						})
					}
				})
			}
		}},
		{"a field both cleared and set is refused", func(t *testing.T, ctx context.Context, l Leases) {
			// DynamoDB refuses an expression that removes and sets the same
			// attribute ("two document paths overlap"): a validation error,
			// neither fenced nor unavailable, and nothing is written.
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			before := get(t, ctx, l, "shop")
			for _, f := range []lease.Fields{{ClearError: true, LastError: ptr("x")}, {ClearBlocks: true, BlockedUntil: ptr(at(time.Hour))}} {
				for name, err := range map[string]error{
					"Commit":  l.Commit(ctx, "shop", "a", 0, at(time.Second), lease.Commit{Fingerprint: "fp", Mode: "stable", Fields: f}),
					"Release": l.Release(ctx, "shop", "a", at(time.Second), f),
				} {
					if err == nil || errors.Is(err, lease.ErrFenced) || errors.Is(err, lease.ErrUnavailable) {
						t.Errorf("%s with %+v: %v, want a validation error", name, f, err)
					}
				}
			}
			wantState(t, ctx, l, before)
		}},
		{"Expire sets the TTL in whole seconds unless leased; Acquire removes it", func(t *testing.T, ctx context.Context, l Leases) {
			expire(t, ctx, l, "gone", at(0), at(time.Hour))
			wantState(t, ctx, l, lease.State{App: "gone", UpdatedAt: stored(at(0)), CleanupAt: time.Unix(at(time.Hour).Unix(), 0).UTC()})

			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			before := get(t, ctx, l, "shop")
			expire(t, ctx, l, "shop", at(59*time.Second), at(time.Hour))
			wantState(t, ctx, l, before)

			expire(t, ctx, l, "shop", at(time.Minute), at(time.Hour))
			want := before
			want.UpdatedAt, want.CleanupAt = stored(at(time.Minute)), time.Unix(at(time.Hour).Unix(), 0).UTC()
			wantState(t, ctx, l, want)

			acquire(t, ctx, l, "shop", "b", at(2*time.Minute), at(3*time.Minute))
			if got := get(t, ctx, l, "shop"); !got.CleanupAt.IsZero() {
				t.Errorf("CleanupAt %v after Acquire, want none", got.CleanupAt)
			}
		}},
		{"List returns every state", func(t *testing.T, ctx context.Context, l Leases) {
			if got, err := l.List(ctx); err != nil || len(got) != 0 {
				t.Fatalf("List of an empty table = %v, %v; want nothing", got, err)
			}
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			commit(t, ctx, l, "shop", "a", 0, at(time.Second), lease.Commit{Fingerprint: "fp1", Mode: "stable", AppID: "wx1"})
			acquire(t, ctx, l, "mp", "b", at(0), at(time.Minute))
			expire(t, ctx, l, "gone", at(0), at(time.Hour))
			var want []lease.State
			for _, app := range []string{"gone", "mp", "shop"} {
				want = append(want, get(t, ctx, l, app))
			}
			got, err := l.List(ctx)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			sort.Slice(got, func(i, j int) bool { return got[i].App < got[j].App })
			if len(got) != len(want) {
				t.Fatalf("List returned %d states, want %d: %+v", len(got), len(want), got)
			}
			for i := range want {
				if d := diff(got[i], want[i]); d != "" {
					t.Errorf("List[%s]: %s", want[i].App, d)
				}
			}
		}},
		{"a done context writes nothing", func(t *testing.T, ctx context.Context, l Leases) {
			acquire(t, ctx, l, "shop", "a", at(0), at(time.Minute))
			before := get(t, ctx, l, "shop")
			done, cancel := context.WithCancel(ctx)
			cancel()
			err := l.Commit(done, "shop", "a", 0, at(time.Second), lease.Commit{Fingerprint: "fp", Mode: "stable"})
			if !errors.Is(err, context.Canceled) || errors.Is(err, lease.ErrUnavailable) {
				t.Errorf("Commit on a canceled context: %v, want context.Canceled (not ErrUnavailable)", err)
			}
			wantState(t, ctx, l, before)
		}},
	}
}

// --- helpers

func get(t *testing.T, ctx context.Context, l Leases, app string) lease.State {
	t.Helper()
	st, err := l.Get(ctx, app)
	if err != nil {
		t.Fatalf("Get %s: %v", app, err)
	}
	return st
}

func wantState(t *testing.T, ctx context.Context, l Leases, want lease.State) {
	t.Helper()
	if d := diff(get(t, ctx, l, want.App), want); d != "" {
		t.Errorf("Get %s: %s", want.App, d)
	}
}

func acquire(t *testing.T, ctx context.Context, l Leases, app, owner string, now, until time.Time) {
	t.Helper()
	if _, err := l.Acquire(ctx, app, owner, now, until); err != nil {
		t.Fatalf("Acquire %s by %s: %v", app, owner, err)
	}
}

func commit(t *testing.T, ctx context.Context, l Leases, app, owner string, fromGen int64, now time.Time, c lease.Commit) {
	t.Helper()
	if err := l.Commit(ctx, app, owner, fromGen, now, c); err != nil {
		t.Fatalf("Commit %s by %s from generation %d: %v", app, owner, fromGen, err)
	}
}

func release(t *testing.T, ctx context.Context, l Leases, app, owner string, now time.Time, f lease.Fields) {
	t.Helper()
	if err := l.Release(ctx, app, owner, now, f); err != nil {
		t.Fatalf("Release %s by %s: %v", app, owner, err)
	}
}

func expire(t *testing.T, ctx context.Context, l Leases, app string, now, at time.Time) {
	t.Helper()
	if err := l.Expire(ctx, app, now, at); err != nil {
		t.Fatalf("Expire %s: %v", app, err)
	}
}

// diff lists the fields in which got differs from want ("" when none). Times
// are compared with ==, so a time not truncated or not in UTC differs.
func diff(got, want lease.State) string {
	var b strings.Builder
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if g != w {
			fmt.Fprintf(&b, "\n\t%s = %v, want %v", gv.Type().Field(i).Name, g, w)
		}
	}
	return b.String()
}
