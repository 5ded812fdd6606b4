package registrytest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/registry/registrytest"
)

// TestContract holds the fake to the registry's semantics; the same suite
// runs against DynamoDB in package registry.
func TestContract(t *testing.T) {
	registrytest.Contract(t, func(*testing.T) registrytest.Subject { return registrytest.New() })
}

// TestFault checks the fault hook and the call counts: a faulted read
// returns the hook's error, wrapped; Get of an invalid name never reaches
// the table.
func TestFault(t *testing.T) {
	ctx := context.Background()
	unavailable := errors.New("dynamodb: throttled")
	f := registrytest.New(registry.App{Name: "shop", AppID: "wx1", Kind: registry.OfficialAccount})
	var hooked []registrytest.Op
	f.SetFault(func(op registrytest.Op, app string) registrytest.Fault {
		hooked = append(hooked, op)
		return registrytest.Fault{Err: unavailable}
	})
	if _, err := f.Get(ctx, "shop"); !errors.Is(err, unavailable) {
		t.Errorf("Get: %v, want the injected error", err)
	}
	if _, _, err := f.List(ctx); !errors.Is(err, unavailable) {
		t.Errorf("List: %v, want the injected error", err)
	}
	if _, err := f.Get(ctx, "Bad!"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get of an invalid name: %v, want ErrNotFound", err)
	}
	if len(hooked) != 2 {
		t.Errorf("hook called for %v, want Get and List only", hooked)
	}
	if got := f.Calls(registrytest.OpGet); got != 2 {
		t.Errorf("Calls(Get) = %d, want 2", got)
	}
	f.SetFault(nil)
	if app, err := f.Get(ctx, "shop"); err != nil || app.AppID != "wx1" {
		t.Errorf("Get without the hook = %+v, %v", app, err)
	}
}
