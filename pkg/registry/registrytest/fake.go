// Package registrytest provides Fake, an in-memory stand-in for
// *registry.Registry that keeps raw DynamoDB items and decodes them with
// registry.Decode, so that malformed items fail exactly as they do in the
// table, and Contract, the suite that holds both to the same semantics. It
// is test support: import it from tests only, never from product code.
package registrytest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/faulthook"
)

// Op names a method of the registry, for Fault and Calls.
type Op string

// The operations of a registry.
const (
	OpGet  Op = "Get"
	OpList Op = "List"
)

// Fault is what a Fake's fault hook wants a call to do instead of answering
// normally (see faulthook.Fault). The registry only reads, so After makes no
// difference but is kept for symmetry with the other fakes: the read happens
// and Err is returned.
type Fault = faulthook.Fault

// Fake is an in-memory registry with the method set and semantics of
// *registry.Registry, plus Put, PutItem and Remove to register apps. The
// zero value is not usable; call New. It is safe for concurrent use.
type Fake struct {
	hook  faulthook.Hook[Op]
	mu    sync.Mutex
	items map[string]map[string]types.AttributeValue
}

// New returns a fake registry holding apps.
func New(apps ...registry.App) *Fake {
	f := &Fake{items: map[string]map[string]types.AttributeValue{}}
	for _, app := range apps {
		f.Put(app)
	}
	return f
}

// SetFault installs fn (nil: none) as the fault hook. Every later call asks
// fn(op, app) what to do (app is "" for List) before it reads; fn runs
// without the fake's lock held, so it may call the fake itself. Get of an
// invalid name never reaches the table, and so never the hook.
func (f *Fake) SetFault(fn func(op Op, app string) Fault) { f.hook.Set(fn) }

// Calls returns how many times op was called, whatever its outcome.
func (f *Fake) Calls(op Op) int { return f.hook.Calls(op) }

// Put registers app with the item registry.Item makes of it.
func (f *Fake) Put(app registry.App) { f.PutItem(app.Name, registry.Item(app)) }

// PutItem stores item as the registration of name, replacing any; its "pk"
// is set to "app#"+name. The map is copied, its attribute values are not.
// Any name is accepted, so that tests can store what an operator could.
func (f *Fake) PutItem(name string, item map[string]types.AttributeValue) {
	item = maps.Clone(item)
	if item == nil {
		item = map[string]types.AttributeValue{}
	}
	item["pk"] = &types.AttributeValueMemberS{Value: "app#" + name}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items[name] = item
}

// Remove deregisters name (nothing if it is not registered).
func (f *Fake) Remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.items, name)
}

// begin counts the call and asks the fault hook.
func (f *Fake) begin(ctx context.Context, op Op, app string) (Fault, error) {
	return f.hook.Ask(ctx, op, app)
}

func (f *Fake) count(op Op) { f.hook.Count(op) }

// Get returns the app name, an error wrapping registry.ErrNotFound when it is
// not registered or its name is invalid, or the *registry.InvalidError of a
// malformed item.
func (f *Fake) Get(ctx context.Context, name string) (registry.App, error) {
	f.count(OpGet)
	if !registry.ValidName(name) {
		return registry.App{}, fmt.Errorf("registry: %q: %w", name, registry.ErrNotFound)
	}
	ft, err := f.begin(ctx, OpGet, name)
	if err != nil {
		return registry.App{}, fmt.Errorf("registry: get %s: %w", name, err)
	}
	f.mu.Lock()
	item := f.items[name]
	f.mu.Unlock()
	if ft.Err != nil {
		return registry.App{}, fmt.Errorf("registry: get %s: %w", name, ft.Err)
	}
	if len(item) == 0 {
		return registry.App{}, fmt.Errorf("registry: %s: %w", name, registry.ErrNotFound)
	}
	return registry.Decode(name, item)
}

// List returns every registered app, sorted by name (the table's order is
// unspecified), and every malformed one as a *registry.InvalidError.
func (f *Fake) List(ctx context.Context) ([]registry.App, []error, error) {
	f.count(OpList)
	ft, err := f.begin(ctx, OpList, "")
	if err != nil {
		return nil, nil, fmt.Errorf("registry: list: %w", err)
	}
	f.mu.Lock()
	names := slices.Sorted(maps.Keys(f.items))
	items := make([]map[string]types.AttributeValue, len(names))
	for i, n := range names {
		items[i] = f.items[n]
	}
	f.mu.Unlock()
	if ft.Err != nil {
		return nil, nil, fmt.Errorf("registry: list: %w", ft.Err)
	}
	var apps []registry.App
	var bad []error
	for i, name := range names {
		app, err := registry.Decode(name, items[i])
		if err != nil {
			bad = append(bad, err)
			continue
		}
		apps = append(apps, app)
	}
	return apps, bad, nil
}
