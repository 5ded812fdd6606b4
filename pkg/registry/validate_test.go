package registry_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
)

// decoded is a registration as Decode returns it, with changes applied.
func decoded(t *testing.T, a registry.App) registry.App {
	t.Helper()
	got, err := registry.Decode(a.Name, registry.Item(a))
	if err != nil {
		t.Fatalf("Decode(%+v): %v", a, err)
	}
	return got
}

func TestValidAppID(t *testing.T) {
	tests := []struct {
		kind registry.Kind
		id   string
		want bool
	}{
		{registry.OfficialAccount, "wx8888888888888888", true}, // WeChat Pay's documented example
		{registry.OfficialAccount, "wx0123456789abcdef", true},
		{registry.MiniProgram, "wx4f28b4b2dcaafca1", true},
		{registry.OfficialAccount, "wx0123456789ABCDEF", false}, // appids are lowercase
		{registry.OfficialAccount, "wx0123456789abcde", false},  // 15 digits
		{registry.OfficialAccount, "wx0123456789abcdef0", false},
		{registry.OfficialAccount, "ww0123456789abcdef", false},               // a corpid
		{registry.OfficialAccount, "gh_0123456789ab", false},                  // the original ID
		{registry.OfficialAccount, "3e2fa5ce1990693588816ff28e259ae0", false}, // an AppSecret
		{registry.OfficialAccount, " wx0123456789abcdef", false},
		{registry.OfficialAccount, "", false},
		{registry.WeCom, "ww0123456789abcdef", true},
		{registry.WeCom, "wx0123456789abcdef", true}, // corps created before 2018
		{registry.WeCom, "wv0123456789abcdef", false},
		{registry.WeCom, "ww0123456789abcdeg", false},
		{registry.Kind("fax"), "wx0123456789abcdef", false},
	}
	for _, tt := range tests {
		if got := registry.ValidAppID(tt.kind, tt.id); got != tt.want {
			t.Errorf("ValidAppID(%s, %q) = %v, want %v", tt.kind, tt.id, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	const oa, corp = "wx0123456789abcdef", "ww0123456789abcdef"
	app := func(mode registry.Mode, f func(*registry.App)) registry.App {
		a := registry.App{Name: "shop", AppID: oa, Kind: registry.OfficialAccount, Mode: mode}
		if mode == registry.GetToken {
			a.AppID, a.Kind = corp, registry.WeCom
		}
		if f != nil {
			f(&a)
		}
		return a
	}
	margin := func(s int) func(*registry.App) {
		return func(a *registry.App) { a.RefreshMargin = time.Duration(s) * time.Second }
	}
	budget := func(n int) func(*registry.App) { return func(a *registry.App) { a.DailyBudget = n } }
	tests := []struct {
		name string
		app  registry.App
		want string // parts of the reason, joined by " && "; "" for valid
	}{
		{"defaults, stable", app(registry.Stable, nil), ""},
		{"defaults, classic", app(registry.Classic, nil), ""},
		{"defaults, WeCom", app(registry.GetToken, nil), ""},
		{"WeCom corpid starting with wx", app(registry.GetToken, func(a *registry.App) { a.AppID = oa }), ""},
		{"appid too short", app(registry.Stable, func(a *registry.App) { a.AppID = "wx1" }), `appid "wx1" does not look like`},
		{"corpid for an Official Account", app(registry.Stable, func(a *registry.App) { a.AppID = corp }), "does not look like a WeChat appid"},
		{"bad corpid", app(registry.GetToken, func(a *registry.App) { a.AppID = "corp-1" }), "does not look like a WeCom corpid"},
		{"margin at the minimum", app(registry.Classic, margin(300)), ""},
		{"margin under the minimum", app(registry.Classic, margin(299)), "refresh_margin_s 299 is under 300"},
		{"margin at the maximum", app(registry.Classic, func(a *registry.App) { a.RefreshMargin, a.DailyBudget = 5400*time.Second, 96 }), ""},
		{"margin over the maximum", app(registry.Classic, margin(5401)), "refresh_margin_s 5401 is over 5400"},
		{"margin of the token's whole life", app(registry.GetToken, margin(7200)), "is over 5400"},
		{"classic budget at the minimum", app(registry.Classic, budget(30)), ""},
		{"classic budget under the minimum", app(registry.Classic, budget(29)), "daily_budget 29 is under 30"},
		{"the minimum follows the margin", app(registry.Classic, func(a *registry.App) { a.RefreshMargin, a.DailyBudget = 5400*time.Second, 95 }), "under 96"},
		{"stable budget at the minimum", app(registry.Stable, budget(24)), ""},
		{"stable budget under the minimum", app(registry.Stable, budget(23)), "under 24"},
		{"classic budget at the maximum", app(registry.Classic, budget(1000)), ""},
		{"classic budget over the maximum", app(registry.Classic, budget(1001)), "daily_budget 1001 is over 1000 for classic"},
		{"classic budget at WeChat's limit", app(registry.Classic, budget(2000)), "over 1000"},
		{"stable budget at the maximum", app(registry.Stable, budget(250000)), ""},
		{"stable budget over the maximum", app(registry.Stable, budget(250001)), "over 250000 for stable"},
		{"WeCom budget over the maximum", app(registry.GetToken, budget(1001)), "over 1000 for wecom"},
		{"every problem is named", app(registry.Classic, func(a *registry.App) { a.AppID, a.RefreshMargin, a.DailyBudget = "wx", 60*time.Second, 5000 }),
			`appid "wx" does not look like && refresh_margin_s 60 is under 300 && daily_budget 5000 is over 1000`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.app
			if a.RefreshMargin == 0 {
				a.RefreshMargin = registry.DefaultRefreshMargin
			}
			if a.DailyBudget == 0 {
				a.DailyBudget = registry.MaxDailyBudget(a.Mode) // over every minimum
				if a.Mode == registry.Classic {
					a.DailyBudget = registry.DefaultClassicBudget
				}
			}
			err := registry.Validate(a)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			var ie *registry.InvalidError
			if !errors.As(err, &ie) || ie.App != "shop" {
				t.Fatalf("Validate: %v, want an *InvalidError of shop", err)
			}
			for _, part := range strings.Split(tt.want, " && ") {
				if !strings.Contains(ie.Reason, part) {
					t.Errorf("reason %q does not say %q", ie.Reason, part)
				}
			}
		})
	}
}

// TestValidateDefaults: the registry's defaults pass every rule.
func TestValidateDefaults(t *testing.T) {
	for _, a := range []registry.App{
		{Name: "a", AppID: "wx0123456789abcdef", Kind: registry.OfficialAccount},
		{Name: "b", AppID: "wx0123456789abcdef", Kind: registry.MiniProgram, Mode: registry.Classic},
		{Name: "c", AppID: "ww0123456789abcdef", Kind: registry.WeCom},
	} {
		if err := registry.Validate(decoded(t, a)); err != nil {
			t.Errorf("defaults of %s: %v", a.Mode, err)
		}
	}
}

// TestDecodeEnforcesStoredRules: the scheduled run rejects a stored item
// only when serving it would spend WeChat's quota (a classic or WeCom margin
// so close to the token's life that the app is due on every run), and keeps
// serving items that break only a registration rule: upgrading never stops
// an app that works.
func TestDecodeEnforcesStoredRules(t *testing.T) {
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
	tests := []struct {
		name string
		item map[string]types.AttributeValue
		want string // part of the reason; "" for accepted
	}{
		{"classic margin at the token's life", map[string]types.AttributeValue{"appid": s("wx1"), "kind": s("offiaccount"), "mode": s("classic"), "refresh_margin_s": n("7200")}, "refresh_margin_s 7200 is over 6900"},
		{"WeCom margin near the token's life", map[string]types.AttributeValue{"appid": s("ww1"), "kind": s("wecom"), "refresh_margin_s": n("6901")}, "over 6900"},
		{"a classic margin over the registration maximum is still served", map[string]types.AttributeValue{"appid": s("wx1"), "kind": s("offiaccount"), "mode": s("classic"), "refresh_margin_s": n("6000")}, ""},
		{"a stable app's margin is unused, so never checked", map[string]types.AttributeValue{"appid": s("wx1"), "kind": s("offiaccount"), "refresh_margin_s": n("7200")}, ""},
		{"a classic budget up to WeChat's limit is still served", map[string]types.AttributeValue{"appid": s("wx1"), "kind": s("miniprogram"), "mode": s("classic"), "daily_budget": n("2000")}, ""},
		{"a large WeCom budget is still served", map[string]types.AttributeValue{"appid": s("ww1"), "kind": s("wecom"), "daily_budget": n("5000")}, ""},
		{"stable budget of 5000 is fine", map[string]types.AttributeValue{"appid": s("wx1"), "kind": s("offiaccount"), "daily_budget": n("5000")}, ""},
		{"a short appid is still served", map[string]types.AttributeValue{"appid": s("wx1"), "kind": s("offiaccount")}, ""},
		{"a small budget is still served", map[string]types.AttributeValue{"appid": s("ww1"), "kind": s("wecom"), "daily_budget": n("5")}, ""},
		{"a small margin is still served", map[string]types.AttributeValue{"appid": s("ww1"), "kind": s("wecom"), "refresh_margin_s": n("60")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := registry.Decode("shop", tt.item)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Decode: %v, want accepted", err)
				}
				return
			}
			var ie *registry.InvalidError
			if !errors.As(err, &ie) || !strings.Contains(ie.Reason, tt.want) {
				t.Fatalf("Decode: %v, want an *InvalidError saying %q", err, tt.want)
			}
		})
	}
}

// TestMinDailyBudgetIsTheScheduleReserve: the least budget is what
// pkg/refresh reserves for the schedule, so that the two cannot drift.
func TestMinDailyBudgetIsTheScheduleReserve(t *testing.T) {
	for _, a := range []registry.App{
		{Mode: registry.Stable, RefreshMargin: registry.DefaultRefreshMargin},
		{Mode: registry.Classic, RefreshMargin: registry.DefaultRefreshMargin},
		{Mode: registry.Classic, RefreshMargin: registry.MinRefreshMargin},
		{Mode: registry.Classic, RefreshMargin: registry.MaxRefreshMargin},
		{Mode: registry.GetToken, RefreshMargin: 7 * time.Minute},
		{Mode: registry.GetToken, RefreshMargin: 7199 * time.Second},
	} {
		a.DailyBudget = 1 << 30 // the reserve is capped at half the budget
		if got, want := registry.MinDailyBudget(a), refresh.ScheduleReserve(a); got != want {
			t.Errorf("MinDailyBudget(%s, margin %s) = %d, ScheduleReserve = %d", a.Mode, a.RefreshMargin, got, want)
		}
	}
	if got := registry.MinDailyBudget(registry.App{Mode: registry.Classic, RefreshMargin: registry.DefaultRefreshMargin}); got != 30 {
		t.Errorf("classic default: %d, want 30 (2 × ceil(86400/6000))", got)
	}
}

func TestDuplicates(t *testing.T) {
	const id1, id2, corp = "wx0000000000000001", "wx0000000000000002", "ww0000000000000001"
	oa := func(name, id string) registry.App {
		return registry.App{Name: name, AppID: id, Kind: registry.OfficialAccount, Mode: registry.Classic}
	}
	stable := func(name, id string) registry.App {
		return registry.App{Name: name, AppID: id, Kind: registry.OfficialAccount, Mode: registry.Stable}
	}
	disabled := oa("old", id1)
	disabled.Disabled = true
	wecom := func(name string) registry.App { return registry.App{Name: name, AppID: corp, Kind: registry.WeCom} }
	mp := registry.App{Name: "mp", AppID: id1, Kind: registry.MiniProgram, Mode: registry.Classic}
	tests := []struct {
		name     string
		apps     []registry.App
		unique   []string
		dupNames []string
		reason   string
	}{
		{"none", []registry.App{oa("a", id1), oa("b", id2)}, []string{"a", "b"}, nil, ""},
		{"both of a pair", []registry.App{oa("a", id1), oa("b", id2), oa("c", id1)}, []string{"b"}, []string{"a", "c"}, "appid wx0000000000000001 is also registered as"},
		{"three names", []registry.App{oa("a", id1), oa("b", id1), oa("c", id1)}, nil, []string{"a", "b", "c"}, ", "},
		{"across kinds", []registry.App{oa("a", id1), mp}, nil, []string{"a", "mp"}, ""},
		{"a disabled app does not count", []registry.App{oa("a", id1), disabled}, []string{"a", "old"}, nil, ""},
		{"WeCom apps share a corpid", []registry.App{wecom("hr"), wecom("crm")}, []string{"hr", "crm"}, nil, ""},
		{"two stable apps of one appid do not supersede each other", []registry.App{stable("a", id1), stable("b", id1)}, []string{"a", "b"}, nil, ""},
		{"stable tokens are isolated from classic ones", []registry.App{stable("a", id1), oa("b", id1)}, []string{"a", "b"}, nil, ""},
		{"empty", nil, nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unique, dups := registry.Duplicates(tt.apps)
			var got []string
			for _, a := range unique {
				got = append(got, a.Name)
			}
			if strings.Join(got, ",") != strings.Join(tt.unique, ",") {
				t.Errorf("unique %v, want %v", got, tt.unique)
			}
			var gotDup []string
			for _, err := range dups {
				var ie *registry.InvalidError
				if !errors.As(err, &ie) {
					t.Fatalf("%v is not an *InvalidError", err)
				}
				gotDup = append(gotDup, ie.App)
				if !strings.Contains(ie.Reason, tt.reason) {
					t.Errorf("reason %q does not say %q", ie.Reason, tt.reason)
				}
			}
			if strings.Join(gotDup, ",") != strings.Join(tt.dupNames, ",") {
				t.Errorf("duplicates %v, want %v", gotDup, tt.dupNames)
			}
		})
	}
}

func TestAccountTaken(t *testing.T) {
	const id = "wx0000000000000001"
	app := func(name string, mode registry.Mode, kind registry.Kind, disabled bool) registry.App {
		return registry.App{Name: name, AppID: id, Kind: kind, Mode: mode, Disabled: disabled}
	}
	registered := []registry.App{app("shop", registry.Stable, registry.OfficialAccount, false), app("old", registry.Classic, registry.OfficialAccount, true)}
	tests := []struct {
		name string
		app  registry.App
		want string // part of the reason; "" for free
	}{
		{"a second stable name for one account", app("shop2", registry.Stable, registry.OfficialAccount, false), "already registered as shop"},
		{"a classic name beside a stable one", app("shop2", registry.Classic, registry.MiniProgram, false), "already registered as shop"},
		{"the same name is a change, not a second registration", app("shop", registry.Classic, registry.OfficialAccount, false), ""},
		{"a disabled registration is free", app("shop2", registry.Stable, registry.OfficialAccount, true), ""},
		{"WeCom corpids are shared", registry.App{Name: "hr", AppID: id, Kind: registry.WeCom}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := registry.AccountTaken(registered, tt.app)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("AccountTaken: %v, want free", err)
				}
				return
			}
			var ie *registry.InvalidError
			if !errors.As(err, &ie) || !strings.Contains(ie.Reason, tt.want) {
				t.Fatalf("AccountTaken: %v, want %q", err, tt.want)
			}
		})
	}
}
