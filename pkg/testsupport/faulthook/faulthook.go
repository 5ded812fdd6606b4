// Package faulthook is the fault hook the in-memory fakes share
// (pkg/lease/leasetest, pkg/tokenstore/tokenstoretest,
// pkg/registry/registrytest): it counts each fake's calls by operation and
// asks a test-installed function what each call should do instead of
// answering normally.
package faulthook

import (
	"context"
	"sync"
)

// Fault is what a fault hook wants a call to do. A zero Fault (Err nil) lets
// the call through.
type Fault struct {
	// Err is returned, wrapped with the call's context as the real package
	// wraps SDK errors.
	Err error
	// After, when true, performs the operation first and then returns Err:
	// the service took the write but its answer was lost.
	After bool
}

// Hook counts calls by Op and holds the installed fault function. The zero
// value is ready to use and safe for concurrent use.
type Hook[Op comparable] struct {
	mu    sync.Mutex
	fn    func(op Op, key string) Fault
	calls map[Op]int
}

// Set installs fn (nil: none). fn runs without any fake's lock held, so it
// may call the fake itself.
func (h *Hook[Op]) Set(fn func(op Op, key string) Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fn = fn
}

// Calls returns how many calls of op were counted.
func (h *Hook[Op]) Calls(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[op]
}

// Count counts one call of op.
func (h *Hook[Op]) Count(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.calls == nil {
		h.calls = map[Op]int{}
	}
	h.calls[op]++
}

// Ask returns the fault to apply to a call of op about key, or an error that
// ends the call before the operation: the context's (an SDK sends nothing on
// a done context) or a fault's without After.
func (h *Hook[Op]) Ask(ctx context.Context, op Op, key string) (Fault, error) {
	h.mu.Lock()
	fn := h.fn
	h.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Fault{}, err
	}
	var ft Fault
	if fn != nil {
		ft = fn(op, key)
	}
	if ft.Err != nil && !ft.After {
		return Fault{}, ft.Err
	}
	return ft, nil
}

// Begin counts a call of op and asks what to do about it (see Ask).
func (h *Hook[Op]) Begin(ctx context.Context, op Op, key string) (Fault, error) {
	h.Count(op)
	return h.Ask(ctx, op, key)
}
