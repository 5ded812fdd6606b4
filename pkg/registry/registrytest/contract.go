package registrytest

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

// Registry is the method set of *registry.Registry, which Fake shares.
type Registry interface {
	Get(ctx context.Context, name string) (registry.App, error)
	List(ctx context.Context) ([]registry.App, []error, error)
}

// Subject is what Contract checks: a registry, and the ways a test
// registers apps (each failing the test on error).
type Subject interface {
	Registry
	// Put registers app with the item registry.Item makes of it.
	Put(app registry.App)
	// PutItem stores item (its "pk" set to "app#"+name) as name's registration.
	PutItem(name string, item map[string]types.AttributeValue)
	// Remove deletes name's registration.
	Remove(name string)
}

var (
	_ Registry = (*registry.Registry)(nil)
	_ Subject  = (*Fake)(nil)
)

// Contract runs the registry's semantics against the registries newRegistry
// returns, one fresh and empty registry per subtest: defaults applied to
// items that leave settings out, Get of an unregistered or invalid name is
// ErrNotFound, a malformed item is an *InvalidError from Get and is set
// apart by List without hiding the others, and Remove deregisters. Run it
// against *registry.Registry on DynamoDB and against Fake, so that the fake
// cannot drift from the engine.
func Contract(t *testing.T, newRegistry func(t *testing.T) Subject) {
	t.Helper()
	for _, c := range contractCases() {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c.run(t, ctx, newRegistry(t))
		})
	}
}

type contractCase struct {
	name string
	run  func(t *testing.T, ctx context.Context, r Subject)
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }

// Apps the cases register, and what Get returns for them.
var (
	shop = registry.App{Name: "shop", AppID: "wx1", Kind: registry.OfficialAccount}
	// shopRead is shop with the defaults Decode applies.
	shopRead = registry.App{Name: "shop", AppID: "wx1", Kind: registry.OfficialAccount, Mode: registry.Stable,
		RefreshMargin: registry.DefaultRefreshMargin, DailyBudget: registry.DefaultStableBudget, MinInterval: registry.DefaultMinInterval}
	corp     = registry.App{Name: "corp", AppID: "ww1", Kind: registry.WeCom, DailyBudget: 5, Disabled: true}
	corpRead = registry.App{Name: "corp", AppID: "ww1", Kind: registry.WeCom, Mode: registry.GetToken,
		RefreshMargin: registry.DefaultRefreshMargin, DailyBudget: 5, MinInterval: registry.DefaultMinInterval, Disabled: true}
	mp = registry.App{Name: "mp-1", AppID: "wx2", Kind: registry.MiniProgram, Mode: registry.Classic,
		RefreshMargin: 15 * time.Minute, DailyBudget: 50, MinInterval: 30 * time.Second}
)

func contractCases() []contractCase {
	return []contractCase{
		{"Get applies defaults and keeps settings", func(t *testing.T, ctx context.Context, r Subject) {
			r.Put(shop)
			r.Put(corp)
			r.Put(mp)
			for _, want := range []registry.App{shopRead, corpRead, mp} {
				if got, err := r.Get(ctx, want.Name); err != nil || got != want {
					t.Errorf("Get %s = %+v (error %v)\nwant %+v", want.Name, got, err, want)
				}
			}
		}},
		{"Get of an unregistered or invalid name is ErrNotFound", func(t *testing.T, ctx context.Context, r Subject) {
			r.PutItem("Bad_Name", map[string]types.AttributeValue{"appid": s("wx"), "kind": s("offiaccount")})
			for _, name := range []string{"nobody", "Bad_Name", "", "-x"} {
				_, err := r.Get(ctx, name)
				var ie *registry.InvalidError
				if !errors.Is(err, registry.ErrNotFound) || errors.As(err, &ie) {
					t.Errorf("Get %q: %v, want ErrNotFound", name, err)
				}
			}
		}},
		{"Get of a malformed item is an InvalidError", func(t *testing.T, ctx context.Context, r Subject) {
			items := map[string]map[string]types.AttributeValue{
				"no-appid":    {"kind": s("offiaccount")},
				"only-key":    {},
				"bad-kind":    {"appid": s("wx"), "kind": s("fax")},
				"bad-budget":  {"appid": s("wx"), "kind": s("offiaccount"), "daily_budget": n("0")},
				"text-margin": {"appid": s("wx"), "kind": s("offiaccount"), "refresh_margin_s": s("60")},
			}
			for name, item := range items {
				r.PutItem(name, item)
			}
			for name := range items {
				_, err := r.Get(ctx, name)
				var ie *registry.InvalidError
				if !errors.As(err, &ie) || ie.App != name || errors.Is(err, registry.ErrNotFound) {
					t.Errorf("Get %s: %v, want *InvalidError for %s", name, err, name)
				}
			}
		}},
		{"List sets malformed items apart", func(t *testing.T, ctx context.Context, r Subject) {
			if apps, bad, err := r.List(ctx); err != nil || len(apps) != 0 || len(bad) != 0 {
				t.Fatalf("List of an empty registry = %v, %v, %v; want nothing", apps, bad, err)
			}
			r.Put(shop)
			r.Put(mp)
			r.PutItem("broken", map[string]types.AttributeValue{"appid": s("wx"), "kind": s("offiaccount"), "mode": s("turbo")})
			r.PutItem("Bad_Name", map[string]types.AttributeValue{"appid": s("wx"), "kind": s("offiaccount")})
			apps, bad, err := r.List(ctx)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
			if want := []registry.App{mp, shopRead}; len(apps) != len(want) || apps[0] != want[0] || apps[1] != want[1] {
				t.Errorf("List apps = %+v\nwant %+v", apps, want)
			}
			var names []string
			for _, err := range bad {
				var ie *registry.InvalidError
				if !errors.As(err, &ie) {
					t.Errorf("List: malformed item's error %v is not an *InvalidError", err)
					continue
				}
				names = append(names, ie.App)
			}
			sort.Strings(names)
			if len(names) != 2 || names[0] != "Bad_Name" || names[1] != "broken" {
				t.Errorf("List: malformed items %v, want [Bad_Name broken]", names)
			}
		}},
		{"PutItem replaces; Remove deregisters", func(t *testing.T, ctx context.Context, r Subject) {
			r.Put(shop)
			r.PutItem("shop", map[string]types.AttributeValue{"appid": s("wx9"), "kind": s("miniprogram"), "mode": s("classic")})
			if got, err := r.Get(ctx, "shop"); err != nil || got.AppID != "wx9" || got.Kind != registry.MiniProgram || got.Mode != registry.Classic ||
				got.DailyBudget != registry.DefaultClassicBudget {
				t.Errorf("Get after PutItem = %+v (error %v), want wx9, a classic mini program with the classic budget", got, err)
			}
			r.Remove("shop")
			if _, err := r.Get(ctx, "shop"); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("Get after Remove: %v, want ErrNotFound", err)
			}
			if apps, bad, err := r.List(ctx); err != nil || len(apps)+len(bad) != 0 {
				t.Errorf("List after Remove = %v, %v, %v; want nothing", apps, bad, err)
			}
		}},
	}
}
