package registry

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"
)

// This file is the one set of rules a registration must follow, shared by
// the operator command (infra/wxtoken, which refuses a bad registration
// before writing it) and the scheduled run (Decode, which rejects a stored
// item that breaks a rule that protects WeChat's quota, and the sweep, which
// rejects duplicate appids). The rules are a table of pure checks.

// TokenLifetime is the life WeChat gives an access_token ("目前是7200秒之内的
// 值", /cgi-bin/token, stable_token and WeCom gettoken alike).
const TokenLifetime = 7200 * time.Second

// Bounds of refresh_margin_s.
const (
	// MinRefreshMargin leaves the schedule (every minute by default) at
	// least five runs to refresh a classic or WeCom token before it expires,
	// and stays above the near-expiry alarm's default threshold (180 s), so
	// a healthy app never trips it.
	MinRefreshMargin = 5 * time.Minute
	// MinRefreshPeriod is the shortest time between two scheduled refreshes
	// of one app that a margin may cause (TokenLifetime − margin): at most
	// 48 scheduled calls a day, 96 with the schedule's retry allowance,
	// which fits a test account's whole /cgi-bin/token limit of 200 a day.
	MinRefreshPeriod = 30 * time.Minute
	// MaxRefreshMargin (90 minutes) is the largest margin MinRefreshPeriod
	// allows. A margin near the token's life would make the app due on
	// every run: one WeChat call a minute, each superseding the last token
	// in classic mode, until the budget is spent.
	MaxRefreshMargin = TokenLifetime - MinRefreshPeriod
	// MaxStoredRefreshMargin is the margin beyond which the scheduled run
	// rejects a stored classic or WeCom item: within 5 minutes of the
	// token's whole life the app is due on (nearly) every run, one WeChat
	// call a minute until the budget is spent and then no token at all.
	// Margins between MaxRefreshMargin and this, which an older wxtoken let
	// through and which work, stay served.
	MaxStoredRefreshMargin = TokenLifetime - 5*time.Minute
)

// Upper bounds of daily_budget, per credential API: half of WeChat's
// documented daily limit, so that wxtoken alone can never spend an account's
// quota and the other half stays for people and emergencies.
const (
	// MaxClassicBudget: /cgi-bin/token allows 2000 calls a day (new
	// accounts; test accounts 200).
	MaxClassicBudget = 1000
	// MaxStableBudget: stable_token allows 500,000 calls a day.
	MaxStableBudget = 250000
	// MaxWeComBudget: WeCom documents no daily count for gettoken (10,000
	// a minute and 150,000 an hour per corp and API), but 2,000 erroneous
	// gettoken calls in an hour block the corp for an hour (WeCom staff,
	// community answer): 1000 a day stays under that even if every call
	// fails.
	MaxWeComBudget = 1000
)

// Appid shapes. WeChat documents an appid only as a string (WeChat Pay:
// String(32), example wx8888888888888888); every Official Account, Mini
// Program and test account appid is "wx" and 16 lowercase hex digits, and
// every WeCom corpid "ww" and 16 (corps created before 2018: "wx"). The
// shapes catch the usual mistakes: the AppSecret, the original ID (gh_...)
// or a corpid pasted as the appid, or a truncated copy.
var (
	appIDRE  = regexp.MustCompile(`^wx[0-9a-f]{16}$`)
	corpIDRE = regexp.MustCompile(`^w[wx][0-9a-f]{16}$`)
)

// ValidAppID reports whether id has the shape of an appid of kind (a corpid
// for WeCom).
func ValidAppID(kind Kind, id string) bool {
	switch kind {
	case OfficialAccount, MiniProgram:
		return appIDRE.MatchString(id)
	case WeCom:
		return corpIDRE.MatchString(id)
	}
	return false
}

// MinDailyBudget is the least daily_budget that lets the schedule refresh
// the app all day: twice the scheduled calls a Beijing day needs (one
// retry each), as pkg/refresh reserves for the schedule (ScheduleReserve).
// Classic and WeCom tokens are refreshed every TokenLifetime − margin,
// stable tokens once per TokenLifetime. Defaults: 30 classic and WeCom, 24
// stable.
func MinDailyBudget(app App) int {
	period := TokenLifetime - app.RefreshMargin
	if app.Mode == Stable {
		period = TokenLifetime
	}
	if period < time.Minute {
		period = time.Minute
	}
	return 2 * int(math.Ceil(float64(24*time.Hour)/float64(period)))
}

// MaxDailyBudget is the largest daily_budget of an app in mode (0 for an
// unknown mode).
func MaxDailyBudget(mode Mode) int {
	switch mode {
	case Classic:
		return MaxClassicBudget
	case Stable:
		return MaxStableBudget
	case GetToken:
		return MaxWeComBudget
	}
	return 0
}

// rule is one check of a decoded registration: it returns what is wrong
// ("" when nothing is). stored marks the rules the scheduled run enforces on
// items already in the table (through Decode): only those whose breach
// spends WeChat's quota whatever the operator meant. The others (shapes,
// minimums, the registration maximums) are enforced when an operator
// registers or changes an app, so that upgrading never stops an app that
// works.
type rule struct {
	name   string
	stored bool
	check  func(App) string
}

var rules = []rule{
	{"appid shape", false, func(a App) string {
		if ValidAppID(a.Kind, a.AppID) {
			return ""
		}
		if a.Kind == WeCom {
			return fmt.Sprintf("corpid %q does not look like a WeCom corpid (\"ww\" or \"wx\" and 16 lowercase hex digits; 我的企业 → 企业信息 → 企业ID)", a.AppID)
		}
		return fmt.Sprintf("appid %q does not look like a WeChat appid (\"wx\" and 16 lowercase hex digits; 开发 → 基本配置 → AppID)", a.AppID)
	}},
	{"margin minimum", false, func(a App) string {
		if usesMargin(a) && a.RefreshMargin < MinRefreshMargin {
			return fmt.Sprintf("refresh_margin_s %d is under %d: the schedule would have too few runs to refresh before the token expires",
				secs(a.RefreshMargin), secs(MinRefreshMargin))
		}
		return ""
	}},
	{"margin maximum", false, func(a App) string {
		if usesMargin(a) && a.RefreshMargin > MaxRefreshMargin {
			return fmt.Sprintf("refresh_margin_s %d is over %d: the token (%d s) would be refreshed more often than every %d minutes",
				secs(a.RefreshMargin), secs(MaxRefreshMargin), secs(TokenLifetime), int(MinRefreshPeriod/time.Minute))
		}
		return ""
	}},
	{"margin near the token's life", true, func(a App) string {
		if usesMargin(a) && a.RefreshMargin > MaxStoredRefreshMargin {
			return fmt.Sprintf("refresh_margin_s %d is over %d: the token (%d s) would be due on every scheduled run, one WeChat call a minute until the daily budget is spent",
				secs(a.RefreshMargin), secs(MaxStoredRefreshMargin), secs(TokenLifetime))
		}
		return ""
	}},
	{"budget minimum", false, func(a App) string {
		if least := MinDailyBudget(a); a.DailyBudget < least {
			return fmt.Sprintf("daily_budget %d is under %d, what the schedule needs a day for this mode and margin (with a retry each)", a.DailyBudget, least)
		}
		return ""
	}},
	{"budget maximum", false, func(a App) string {
		if most := MaxDailyBudget(a.Mode); a.DailyBudget > most {
			return fmt.Sprintf("daily_budget %d is over %d for %s mode: half of WeChat's daily limit, so that wxtoken alone cannot use up the account's quota", a.DailyBudget, most, a.Mode)
		}
		return ""
	}},
}

// usesMargin reports whether refresh_margin_s decides when one of the app's
// credentials is refreshed: classic and WeCom tokens, and every ticket;
// stable tokens are refreshed in WeChat's final window whatever the margin.
func usesMargin(a App) bool { return a.Mode != Stable || a.Tickets != 0 }

// Validate checks a decoded registration (as Decode returns it, defaults
// applied) against every rule and returns an *InvalidError naming all that
// is wrong, or nil. It is what an operator's registration must pass.
func Validate(app App) error { return check(app, false) }

// checkStored checks the rules the scheduled run enforces on stored items.
func checkStored(app App) error { return check(app, true) }

func check(app App, storedOnly bool) error {
	var problems []string
	for _, r := range rules {
		if storedOnly && !r.stored {
			continue
		}
		if p := r.check(app); p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &InvalidError{App: app.Name, Reason: strings.Join(problems, "; ")}
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

// Duplicates splits apps into those whose account is registered once and an
// *InvalidError for each app of an account registered under several names,
// naming the others. Two classic-mode fetchers with one AppSecret invalidate
// each other's tokens (every /cgi-bin/token call ends the previous token five
// minutes later) and turn every refresh into drift, so an Official Account or
// Mini Program appid may be registered once among the enabled classic-mode
// apps. Stable-mode apps are exempt: stable_token does not end a token
// before its time and its tokens are isolated from /cgi-bin/token's, so a
// stable app beside another app of the same appid harms neither (a rename
// in progress, for example). WeCom corpids are exempt too: every WeCom
// application of a corp has its own secret and token under the same corpid.
// Disabled apps fetch nothing and are neither checked nor counted. The order
// of apps is kept.
func Duplicates(apps []App) (unique []App, dups []error) {
	names := map[string][]string{}
	for _, a := range apps {
		if counted(a) {
			names[a.AppID] = append(names[a.AppID], a.Name)
		}
	}
	for _, a := range apps {
		others := names[a.AppID]
		if !counted(a) || len(others) < 2 {
			unique = append(unique, a)
			continue
		}
		var rest []string
		for _, n := range others {
			if n != a.Name {
				rest = append(rest, n)
			}
		}
		sort.Strings(rest)
		dups = append(dups, &InvalidError{App: a.Name, Reason: fmt.Sprintf(
			"appid %s is also registered as %s: two apps fetching with one AppSecret invalidate each other's tokens; remove or disable all but one",
			a.AppID, strings.Join(rest, ", "))})
	}
	return unique, dups
}

// AccountTaken returns an *InvalidError when app's appid (an Official
// Account's or Mini Program's) is already registered under another name
// among the enabled apps, whatever their modes: registering one account
// twice is refused even where, in stable mode, the scheduled run would serve
// both (see Duplicates). WeCom corpids are shared by design and disabled
// apps fetch nothing, so neither counts.
func AccountTaken(apps []App, app App) error {
	if app.Disabled || app.Kind == WeCom {
		return nil
	}
	var others []string
	for _, a := range apps {
		if a.Name != app.Name && a.AppID == app.AppID && !a.Disabled && a.Kind != WeCom {
			others = append(others, a.Name)
		}
	}
	if len(others) == 0 {
		return nil
	}
	sort.Strings(others)
	return &InvalidError{App: app.Name, Reason: fmt.Sprintf(
		"appid %s is already registered as %s: one account is registered once (classic-mode fetchers invalidate each other's tokens); remove or disable the other first",
		app.AppID, strings.Join(others, ", "))}
}

// counted reports whether an app takes part in the duplicate check.
func counted(a App) bool { return !a.Disabled && a.Kind != WeCom && a.Mode == Classic }
