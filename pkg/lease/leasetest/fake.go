// Package leasetest provides Fake, an in-memory stand-in for *lease.Table
// with the same conditional-write semantics, and Contract, the suite that
// holds both to those semantics. It is test support: import it from tests
// only, never from product code.
//
// The fake keeps each state as the attributes DynamoDB would store (numbers
// and strings), applies every method's update and condition the way the
// table's UpdateItem expressions do, and decodes items the way lease does:
// times at millisecond precision in UTC, the TTL in whole seconds.
package leasetest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/testsupport/faulthook"
)

// Op names a method of the table, for Fault and Calls.
type Op string

// The operations of a lease table.
const (
	OpGet     Op = "Get"
	OpAcquire Op = "Acquire"
	OpCommit  Op = "Commit"
	OpConfirm Op = "Confirm"
	OpRelease Op = "Release"
	OpExpire  Op = "Expire"
	OpList    Op = "List"
)

// Fault is what a Fake's fault hook wants a call to do instead of answering
// normally (see faulthook.Fault): a zero Fault lets the call through; Err is
// returned wrapped as the table wraps SDK errors; After performs the write
// first (DynamoDB took it but its answer was lost).
type Fault = faulthook.Fault

// Throttled returns an error that errors.Is lease.ErrUnavailable, as the
// table returns for DynamoDB's throttling, 5xx answers and dropped
// connections; use it as a Fault's Err.
func Throttled() error {
	return fmt.Errorf("leasetest: injected throttling: %w", lease.ErrUnavailable)
}

// Fake is an in-memory lease table with the method set and semantics of
// *lease.Table. The zero value is not usable; call New. It is safe for
// concurrent use.
type Fake struct {
	hook  faulthook.Hook[Op]
	mu    sync.Mutex
	items map[string]item
}

// New returns an empty fake table.
func New() *Fake {
	return &Fake{items: map[string]item{}}
}

// SetFault installs fn (nil: none) as the fault hook. Every later call asks
// fn(op, app) what to do (app is "" for List) before it does anything; fn
// runs without the fake's lock held, so it may call the fake itself, for
// example to let a rival take the lease in the middle of a Commit.
func (f *Fake) SetFault(fn func(op Op, app string) Fault) { f.hook.Set(fn) }

// Calls returns how many times op was called, whatever its outcome
// (faults and canceled contexts included).
func (f *Fake) Calls(op Op) int { return f.hook.Calls(op) }

// begin counts the call and asks the fault hook; it returns the fault to
// apply, or an error that ends the call before the operation (a canceled
// context, or a fault without After).
func (f *Fake) begin(ctx context.Context, op Op, app string) (Fault, error) {
	return f.hook.Begin(ctx, op, app)
}

// Get returns the app's state; an app never written has the zero State with
// App set. It returns the fault hook's error, or the context's.
func (f *Fake) Get(ctx context.Context, app string) (lease.State, error) {
	ft, err := f.begin(ctx, OpGet, app)
	if err != nil {
		return lease.State{}, fmt.Errorf("lease: get %s: %w", app, err)
	}
	f.mu.Lock()
	st := f.items[app].decode(app)
	f.mu.Unlock()
	if ft.Err != nil {
		return lease.State{}, fmt.Errorf("lease: get %s: %w", app, ft.Err)
	}
	return st, nil
}

// Acquire takes the app's lease for owner until until if no lease exists or
// lease_until <= now, and removes the cleanup TTL. It returns the state after
// the write, or the holder's state with an error wrapping lease.ErrHeld.
func (f *Fake) Acquire(ctx context.Context, app, owner string, now, until time.Time) (lease.State, error) {
	ft, err := f.begin(ctx, OpAcquire, app)
	if err != nil {
		return lease.State{}, fmt.Errorf("lease: acquire %s: %w", app, err)
	}
	f.mu.Lock()
	it := f.items[app]
	if lu, ok := it.num("lease_until"); ok && lu > now.UnixMilli() {
		st := it.decode(app)
		f.mu.Unlock()
		return st, fmt.Errorf("lease: acquire %s: %w (owner %s until %s)", app, lease.ErrHeld, st.LeaseOwner, st.LeaseUntil.UTC().Format(time.RFC3339Nano))
	}
	u := update{}
	u.set("lease_owner", owner)
	u.set("lease_until", ms(until))
	u.set("updated_at", ms(now))
	u.remove("ttl")
	it = u.apply(it)
	f.items[app] = it
	st := it.decode(app)
	f.mu.Unlock()
	if ft.Err != nil {
		return lease.State{}, fmt.Errorf("lease: acquire %s: %w", app, ft.Err)
	}
	return st, nil
}

// Commit records a new token as generation fromGen+1 with version 0, if owner
// holds a lease with lease_until > now and the generation is fromGen (absent
// when fromGen is 0); otherwise it writes nothing and returns an error
// wrapping lease.ErrFenced. Like DynamoDB, it refuses Fields that set and
// remove the same attribute (ClearError with LastError, say) before looking
// at the condition.
func (f *Fake) Commit(ctx context.Context, app, owner string, fromGen int64, now time.Time, c lease.Commit) error {
	ft, err := f.begin(ctx, OpCommit, app)
	if err != nil {
		return fmt.Errorf("lease: commit %s generation %d: %w", app, fromGen+1, err)
	}
	u := update{}
	u.set("generation", fromGen+1)
	u.set("version", int64(0))
	u.set("fingerprint", c.Fingerprint)
	u.set("mode", c.Mode)
	if c.AppID != "" {
		u.set("appid", c.AppID)
	}
	if c.Kind != "" {
		u.set("kind", c.Kind)
	}
	if c.Pending != "" {
		u.set("pending", c.Pending)
	} else {
		u.remove("pending")
	}
	u.set("fetched_at", ms(c.FetchedAt))
	u.set("expires_at", ms(c.ExpiresAt))
	u.set("updated_at", ms(now))
	applyFields(&u, c.Fields)
	if err := u.validate(); err != nil {
		return fmt.Errorf("lease: commit %s generation %d: %w", app, fromGen+1, err)
	}

	f.mu.Lock()
	it := f.items[app]
	lo, hasLO := it.str("lease_owner")
	lu, hasLU := it.num("lease_until")
	gen, hasGen := it.num("generation")
	ok := hasLO && lo == owner && hasLU && lu > now.UnixMilli()
	if fromGen == 0 {
		ok = ok && !hasGen
	} else {
		ok = ok && hasGen && gen == fromGen
	}
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("lease: commit %s generation %d: %w", app, fromGen+1, lease.ErrFenced)
	}
	f.items[app] = u.apply(it)
	f.mu.Unlock()
	if ft.Err != nil {
		return fmt.Errorf("lease: commit %s generation %d: %w", app, fromGen+1, ft.Err)
	}
	return nil
}

// Confirm records version as the SSM version of generation gen's token and
// removes the pending copy, if the generation is gen; otherwise it writes
// nothing and returns an error wrapping lease.ErrFenced.
func (f *Fake) Confirm(ctx context.Context, app string, gen, version int64, now time.Time) error {
	ft, err := f.begin(ctx, OpConfirm, app)
	if err != nil {
		return fmt.Errorf("lease: confirm %s generation %d: %w", app, gen, err)
	}
	f.mu.Lock()
	it := f.items[app]
	if g, ok := it.num("generation"); !ok || g != gen {
		f.mu.Unlock()
		return fmt.Errorf("lease: confirm %s generation %d: %w", app, gen, lease.ErrFenced)
	}
	u := update{}
	u.set("version", version)
	u.set("updated_at", ms(now))
	u.remove("pending")
	f.items[app] = u.apply(it)
	f.mu.Unlock()
	if ft.Err != nil {
		return fmt.Errorf("lease: confirm %s generation %d: %w", app, gen, ft.Err)
	}
	return nil
}

// Release removes owner's lease and writes fs, if lease_owner is owner
// (expired or not); otherwise it writes nothing and returns an error wrapping
// lease.ErrFenced.
func (f *Fake) Release(ctx context.Context, app, owner string, now time.Time, fs lease.Fields) error {
	ft, err := f.begin(ctx, OpRelease, app)
	if err != nil {
		return fmt.Errorf("lease: release %s: %w", app, err)
	}
	u := update{}
	applyFields(&u, fs)
	u.set("updated_at", ms(now))
	u.remove("lease_owner", "lease_until")
	if err := u.validate(); err != nil {
		return fmt.Errorf("lease: release %s: %w", app, err)
	}
	f.mu.Lock()
	it := f.items[app]
	if lo, ok := it.str("lease_owner"); !ok || lo != owner {
		f.mu.Unlock()
		return fmt.Errorf("lease: release %s: %w", app, lease.ErrFenced)
	}
	f.items[app] = u.apply(it)
	f.mu.Unlock()
	if ft.Err != nil {
		return fmt.Errorf("lease: release %s: %w", app, ft.Err)
	}
	return nil
}

// Expire sets the app's cleanup TTL to at (whole seconds) unless an
// unexpired lease exists at now, in which case it does nothing and returns
// nil. Like DynamoDB's UpdateItem, it creates the item of an app never
// written.
func (f *Fake) Expire(ctx context.Context, app string, now, at time.Time) error {
	ft, err := f.begin(ctx, OpExpire, app)
	if err != nil {
		return fmt.Errorf("lease: expire %s: %w", app, err)
	}
	f.mu.Lock()
	it := f.items[app]
	if lu, ok := it.num("lease_until"); !ok || lu <= now.UnixMilli() {
		u := update{}
		u.set("ttl", at.Unix())
		u.set("updated_at", ms(now))
		f.items[app] = u.apply(it)
	}
	f.mu.Unlock()
	if ft.Err != nil {
		return fmt.Errorf("lease: expire %s: %w", app, ft.Err)
	}
	return nil
}

// List returns every app's state, sorted by app (the table's order is
// unspecified); nil when there is none. An app named "" is left out, as the
// table leaves it out.
func (f *Fake) List(ctx context.Context) ([]lease.State, error) {
	ft, err := f.begin(ctx, OpList, "")
	if err != nil {
		return nil, fmt.Errorf("lease: list: %w", err)
	}
	f.mu.Lock()
	var out []lease.State
	for app, it := range f.items {
		if app != "" {
			out = append(out, it.decode(app))
		}
	}
	f.mu.Unlock()
	if ft.Err != nil {
		return nil, fmt.Errorf("lease: list: %w", ft.Err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out, nil
}

// Delete removes an app's state item, as a test (or DynamoDB's TTL, or a
// new table over an existing parameter prefix) would; it is not a method of
// the table.
func (f *Fake) Delete(app string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.items, app)
}

// ms is a time as the table stores it: Unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

// applyFields adds f to u through lease's own mapping of Fields to
// attributes.
func applyFields(u *update, f lease.Fields) {
	f.Attributes(u.set, func(attrs ...string) { u.remove(attrs...) })
}
