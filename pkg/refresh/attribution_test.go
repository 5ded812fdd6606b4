package refresh_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awscalls"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// signingApps is a registry that asks awscalls.EntryPoint for credentials
// on every call, as an SDK client signing the call would, and notes who it
// would have signed as.
type signingApps struct {
	mu  sync.Mutex
	ids map[string]awscalls.Identity
}

var errNoApp = errors.New("no such app")

func (s *signingApps) sign(ctx context.Context, op string) {
	c, _ := awscalls.EntryPoint{}.Retrieve(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[op] = awscalls.Identity(c.AccessKeyID)
}

func (s *signingApps) Get(ctx context.Context, name string) (registry.App, error) {
	s.sign(ctx, "Get")
	return registry.App{}, errNoApp
}

func (s *signingApps) List(ctx context.Context) ([]registry.App, []error, error) {
	s.sign(ctx, "List")
	return nil, nil, nil
}

// The IAM check evaluates each AWS call the refresh core's tests make
// against the role of the function whose entry point made it: the scheduled
// function's RefreshDue, the API function's Refresh, ForceRefresh and Status.
func TestCallsAreSignedAsTheFunctionOfTheirEntryPoint(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	apps := &signingApps{ids: map[string]awscalls.Identity{}}
	r := b.refresher("attribution", func(r *refresh.Refresher) { r.Apps = apps })
	ctx := context.Background()

	tests := []struct {
		name string
		call func()
		op   string
		want awscalls.Identity
	}{
		{"RefreshDue lists apps as the scheduled function", func() { _, _ = r.RefreshDue(ctx) }, "List", awscalls.Scheduled},
		{"Refresh reads the app as the API function", func() { _, _ = r.Refresh(ctx, "shop", "") }, "Get", awscalls.API},
		{"ForceRefresh reads the app as the API function", func() { _, _ = r.ForceRefresh(ctx, "shop") }, "Get", awscalls.API},
		{"Status reads the app as the API function", func() { _, _ = r.Status(ctx, "shop") }, "Get", awscalls.API},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apps.mu.Lock()
			delete(apps.ids, tt.op)
			apps.mu.Unlock()
			tt.call()
			apps.mu.Lock()
			got, ok := apps.ids[tt.op]
			apps.mu.Unlock()
			if !ok || got != tt.want {
				t.Errorf("%s signed as %q (called: %v), want %q", tt.op, got, ok, tt.want)
			}
		})
	}
}
