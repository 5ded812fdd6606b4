package refresh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// The pure decisions of policy.go, table by table, on a fixed clock.

var (
	now0 = time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC) // 10:00 in Beijing
	cfg0 = policyConfig{stableWindow: DefaultStableWindow, stableSlack: DefaultStableSlack, configBlock: DefaultConfigBlock, verifiedFor: DefaultVerifiedFor}
)

func testApp(mode registry.Mode) registry.App {
	kind := registry.OfficialAccount
	budget := registry.DefaultStableBudget
	switch mode {
	case registry.GetToken:
		kind, budget = registry.WeCom, registry.DefaultWeComBudget
	case registry.Classic:
		budget = registry.DefaultClassicBudget
	}
	return registry.App{Name: "shop", AppID: "wx1", Kind: kind, Mode: mode, RefreshMargin: registry.DefaultRefreshMargin,
		DailyBudget: budget, MinInterval: registry.DefaultMinInterval}
}

// committed is the state of a published token of app expiring at exp.
func committed(a registry.App, exp time.Time) lease.State {
	return lease.State{App: a.Name, Generation: 3, Version: 3, Fingerprint: "fp", Mode: string(a.Mode), AppID: a.AppID,
		Kind: string(a.Kind), FetchedAt: exp.Add(-2 * time.Hour), ExpiresAt: exp}
}

func TestDue(t *testing.T) {
	classic, stable, wecom := testApp(registry.Classic), testApp(registry.Stable), testApp(registry.GetToken)
	exp := now0.Add(time.Hour)
	tests := []struct {
		name        string
		app         registry.App
		st          func() lease.State
		publishedOK bool
		expiresAt   time.Time
		at          time.Time
		want        DueReason
	}{
		{"never refreshed", classic, func() lease.State { return lease.State{} }, false, time.Time{}, now0, DueNoToken},
		{"SSM does not hold the committed token", classic, func() lease.State { return committed(classic, exp) }, false, time.Time{}, now0, DueNoToken},
		{"classic, fresh", classic, func() lease.State { return committed(classic, exp) }, true, exp, now0, NotDue},
		{"classic, a second before the margin", classic, func() lease.State { return committed(classic, exp) }, true, exp, exp.Add(-20*time.Minute - time.Second), NotDue},
		{"classic, at the margin", classic, func() lease.State { return committed(classic, exp) }, true, exp, exp.Add(-20 * time.Minute), DueExpiry},
		{"wecom uses the margin too", wecom, func() lease.State { return committed(wecom, exp) }, true, exp, exp.Add(-19 * time.Minute), DueExpiry},
		{"stable, before its final window", stable, func() lease.State { return committed(stable, exp) }, true, exp, exp.Add(-5 * time.Minute), NotDue},
		{"stable, 4.5 min before expiry", stable, func() lease.State { return committed(stable, exp) }, true, exp, exp.Add(-270 * time.Second), DueExpiry},
		{"mode changed", classic, func() lease.State { return committed(stable, exp) }, true, exp, now0, DueMode},
		{"appid changed", stable, func() lease.State { st := committed(stable, exp); st.AppID = "wx-other"; return st }, true, exp, now0, DueAccount},
		{"kind changed", stable, func() lease.State { st := committed(stable, exp); st.Kind = "miniprogram"; return st }, true, exp, now0, DueAccount},
		{"a state from before accounts were recorded", stable, func() lease.State { st := committed(stable, exp); st.AppID, st.Kind = "", ""; return st }, true, exp, now0, NotDue},
		{"a sealed token waits for its publish", classic, func() lease.State { st := committed(classic, exp); st.Version, st.Pending = 0, "sealed"; return st }, false, exp, now0, DueUnpublished},
		{"a lost token superseded the published one", stable, func() lease.State {
			st := committed(stable, exp)
			st.SupersededAt = now0
			return st
		}, true, exp, now0, DueSuperseded},
		{"a newer commit clears the supersede", stable, func() lease.State {
			st := committed(stable, exp)
			st.SupersededAt = st.FetchedAt.Add(-time.Second)
			return st
		}, true, exp, now0, NotDue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := due(cfg0, tt.app, tt.st(), tt.publishedOK, tt.expiresAt, tt.at); got != tt.want {
				t.Errorf("due = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	classic, stable := testApp(registry.Classic), testApp(registry.Stable)
	day := beijingDay(now0)
	st := func(f func(*lease.State)) lease.State {
		s := committed(classic, now0.Add(time.Hour))
		f(&s)
		return s
	}
	paused := func(s *lease.State) {
		s.BlockedUntil, s.BlockedSecretVersion, s.LastErrCode, s.LastErrorClass = now0.Add(10*time.Minute), 2, 40164, "config"
	}
	tests := []struct {
		name          string
		app           registry.App
		st            lease.State
		k             kind
		secretVersion int64
		want          string // refusal reason, "" when admitted
		retryAfter    time.Duration
	}{
		{"nothing against it", classic, st(func(*lease.State) {}), onDemand, 0, "", 0},
		{"paused: scheduled", classic, st(paused), scheduled, 2, ReasonBlocked, 10 * time.Minute},
		{"paused: on demand", classic, st(paused), onDemand, 0, ReasonBlocked, 10 * time.Minute},
		{"paused: force goes through a normal-mode pause", classic, st(paused), force, 0, "", 0},
		{"a new secret ends the pause", classic, st(paused), scheduled, 3, "", 0},
		{"the same secret keeps it", classic, st(paused), scheduled, 2, ReasonBlocked, 10 * time.Minute},
		{"a pause begun without a secret ends when one exists", classic, st(func(s *lease.State) { paused(s); s.BlockedSecretVersion = -1 }), scheduled, 1, "", 0},
		{"an unknown secret version keeps it", classic, st(paused), scheduled, 0, ReasonBlocked, 10 * time.Minute},
		{"a pause that ended", classic, st(func(s *lease.State) { paused(s); s.BlockedUntil = now0 }), scheduled, 2, "", 0},
		{"forced pause stops force only", stable, st(func(s *lease.State) { s.ForceBlockedUntil = now0.Add(time.Hour) }), force, 0, ReasonBlocked, time.Hour},
		{"forced pause lets the schedule through", stable, st(func(s *lease.State) { s.ForceBlockedUntil = now0.Add(time.Hour) }), scheduled, 0, "", 0},
		{"budget: the schedule may use all of it", classic, st(func(s *lease.State) { s.CallsDay, s.CallsToday = day, classic.DailyBudget-1 }), scheduled, 0, "", 0},
		{"budget: spent", classic, st(func(s *lease.State) { s.CallsDay, s.CallsToday = day, classic.DailyBudget }), scheduled, 0, ReasonDailyBudget, 14 * time.Hour},
		{"budget: claims leave the reserve", classic, st(func(s *lease.State) { s.CallsDay, s.CallsToday = day, classic.DailyBudget-ScheduleReserve(classic) }), onDemand, 0, ReasonDailyBudget, 14 * time.Hour},
		{"budget: ensure leaves the reserve", classic, st(func(s *lease.State) { s.CallsDay, s.CallsToday = day, classic.DailyBudget-ScheduleReserve(classic) }), ensure, 0, ReasonDailyBudget, 14 * time.Hour},
		{"budget: yesterday's calls do not count", classic, st(func(s *lease.State) { s.CallsDay, s.CallsToday = "2026-11-20", classic.DailyBudget }), onDemand, 0, "", 0},
		{"interval: on demand", classic, st(func(s *lease.State) { s.LastOnDemandAt = now0.Add(-20 * time.Second) }), onDemand, 0, ReasonMinInterval, 40 * time.Second},
		{"interval: force", classic, st(func(s *lease.State) { s.LastOnDemandAt = now0.Add(-20 * time.Second) }), force, 0, ReasonMinInterval, 40 * time.Second},
		{"interval: not the schedule", classic, st(func(s *lease.State) { s.LastOnDemandAt = now0.Add(-20 * time.Second) }), scheduled, 0, "", 0},
		{"interval: over", classic, st(func(s *lease.State) { s.LastOnDemandAt = now0.Add(-time.Minute) }), onDemand, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := admit(tt.app, tt.st, tt.k, now0, tt.secretVersion)
			switch {
			case tt.want == "" && got != nil:
				t.Errorf("refused (%s, retry after %v), want admitted", got.reason, got.retryAfter)
			case tt.want != "" && got == nil:
				t.Errorf("admitted, want refused (%s)", tt.want)
			case got != nil && (got.reason != tt.want || got.retryAfter != tt.retryAfter):
				t.Errorf("refused (%s, retry after %v), want (%s, %v)", got.reason, got.retryAfter, tt.want, tt.retryAfter)
			}
		})
	}
}

func TestFailureFields(t *testing.T) {
	classic, stable := testApp(registry.Classic), testApp(registry.Stable)
	werr := func(code int) error {
		return fmt.Errorf("refresh: %w", &wechat.Error{Op: wechat.OpToken, Code: code, Msg: "x"})
	}
	at := func(d time.Duration) *time.Time { t := now0.Add(d); return &t }
	tests := []struct {
		name         string
		app          registry.App
		k            kind
		err          error
		class        Class
		code         int
		blocked      *time.Time
		forceBlocked *time.Time
		interval     bool
	}{
		{"-1 retries, no pause, no interval", classic, onDemand, werr(-1), ClassRetryable, -1, nil, nil, false},
		{"45011 pauses a minute", classic, scheduled, werr(45011), ClassMinuteQuota, 45011, at(time.Minute), nil, false},
		{"45009 pauses until Beijing midnight", classic, scheduled, werr(45009), ClassDailyQuota, 45009, at(14 * time.Hour), nil, false},
		{"45009 to a forced stable call pauses forced calls only", stable, force, werr(45009), ClassDailyQuota, 45009, nil, at(14 * time.Hour), true},
		{"45009 to a forced classic call pauses the one API", classic, force, werr(45009), ClassDailyQuota, 45009, at(14 * time.Hour), nil, true},
		{"40164 pauses the config block and starts the interval", classic, onDemand, werr(40164), ClassConfig, 40164, at(DefaultConfigBlock), nil, true},
		{"a config error to a forced call pauses everything", stable, force, werr(40125), ClassConfig, 40125, at(DefaultConfigBlock), nil, true},
		{"AWS throttling: its own class, no errcode", classic, onDemand, fmt.Errorf("commit failed: %w", lease.ErrUnavailable), ClassUnavailable, 0, nil, nil, false},
		{"a missing secret is a config error", classic, scheduled, errNoSecret, ClassConfig, 0, at(DefaultConfigBlock), nil, false},
		{"WeCom's hourly ticket limit pauses until the hour turns, no interval", testApp(registry.GetToken), onDemand,
			fmt.Errorf("refresh: %w", &wechat.Error{Op: wechat.OpWeComJSAPITicket, Code: 45009}), ClassHourQuota, 45009, at(time.Hour), nil, false},
		{"a ticket another registration keeps pauses like a config error", classic, onDemand,
			fmt.Errorf("refresh: %w", &registry.InvalidError{App: "b", Reason: "tickets: a also registers it"}), ClassInvalid, 0, at(DefaultConfigBlock), nil, true},
		{"anything else", classic, onDemand, errors.New("boom"), ClassInternal, 0, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := failureFields(cfg0, tt.app, tt.k, tt.err, now0, 7)
			if f.LastErrorClass == nil || *f.LastErrorClass != string(tt.class) || f.LastErrCode == nil || *f.LastErrCode != tt.code {
				t.Errorf("class %v code %v, want %s and %d", deref(f.LastErrorClass), deref(f.LastErrCode), tt.class, tt.code)
			}
			if !sameTime(f.BlockedUntil, tt.blocked) || !sameTime(f.ForceBlockedUntil, tt.forceBlocked) {
				t.Errorf("blocked until %v, forced %v; want %v and %v", deref(f.BlockedUntil), deref(f.ForceBlockedUntil), deref(tt.blocked), deref(tt.forceBlocked))
			}
			if paused := tt.blocked != nil || tt.forceBlocked != nil; paused != (f.BlockedSecretVersion != nil && *f.BlockedSecretVersion == 7) {
				t.Errorf("secret version recorded %v, want it with every pause", deref(f.BlockedSecretVersion))
			}
			if got := !f.LastOnDemandAt.IsZero(); got != tt.interval {
				t.Errorf("starts the minimum interval: %v, want %v", got, tt.interval)
			}
		})
	}
}

func TestScheduleReserve(t *testing.T) {
	tests := []struct {
		name string
		app  func() registry.App
		want int
	}{
		{"classic, 20-minute margin: 15 refreshes a day, twice", func() registry.App { return testApp(registry.Classic) }, 30},
		{"stable: 12 rotations a day, twice", func() registry.App { return testApp(registry.Stable) }, 24},
		{"wecom like classic", func() registry.App { return testApp(registry.GetToken) }, 30},
		{"at most half the budget", func() registry.App { a := testApp(registry.Classic); a.DailyBudget = 10; return a }, 5},
		{"a margin over the lifetime counts a refresh a minute", func() registry.App {
			a := testApp(registry.Classic)
			a.RefreshMargin, a.DailyBudget = 3*time.Hour, 100000
			return a
		}, 2880},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ScheduleReserve(tt.app()); got != tt.want {
				t.Errorf("ScheduleReserve = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestDecide: every class has one row, and the API and the schedule read
// these decisions (HTTP status, code, Retry-After, paging).
func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		class  Class
		status int
		code   string
		page   bool
	}{
		{"WeChat -1", &wechat.Error{Op: wechat.OpToken, Code: -1}, ClassRetryable, http.StatusBadGateway, "wechat_unavailable", false},
		{"WeChat unreachable", &wechat.TransportError{Op: wechat.OpToken, Err: errors.New("refused")}, ClassRetryable, http.StatusBadGateway, "wechat_unavailable", false},
		{"45009", &wechat.Error{Op: wechat.OpToken, Code: 45009}, ClassDailyQuota, http.StatusBadGateway, "wechat_error", true},
		{"40164", &wechat.Error{Op: wechat.OpToken, Code: 40164}, ClassConfig, http.StatusBadGateway, "wechat_error", true},
		{"waited for a recorded config failure", &FailedError{Class: ClassConfig, ErrCode: 40125}, ClassConfig, http.StatusBadGateway, "wechat_error", true},
		{"a record without a class", &FailedError{ErrCode: 45009}, ClassDailyQuota, http.StatusBadGateway, "wechat_error", true},
		{"a paused app's refusal", &RefusedError{Reason: ReasonBlocked, ErrCode: 45011, Class: ClassMinuteQuota}, ClassMinuteQuota, http.StatusBadGateway, "wechat_error", false},
		{"DynamoDB throttled", fmt.Errorf("x: %w", lease.ErrUnavailable), ClassUnavailable, http.StatusServiceUnavailable, "aws_unavailable", false},
		{"unverifiable claim", fmt.Errorf("x: %w", ErrUnverified), ClassUnverified, http.StatusServiceUnavailable, "claim_unverified", false},
		{"lock wait", fmt.Errorf("%w (app x)", ErrLockTimeout), ClassInProgress, http.StatusServiceUnavailable, "refresh_in_progress", false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), ClassTimeout, http.StatusServiceUnavailable, "timeout", false},
		{"WeCom's hourly ticket limit", &wechat.Error{Op: wechat.OpWeComAgentTicket, Code: 45009}, ClassHourQuota, http.StatusBadGateway, "wechat_error", false},
		{"a rejected registration", &registry.InvalidError{App: "x", Reason: "bad"}, ClassInvalid, http.StatusConflict, "invalid_registration", true},
		{"anything else", errors.New("boom"), ClassInternal, http.StatusInternalServerError, "internal", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.err)
			if d.Class != tt.class || d.HTTPStatus != tt.status || d.Code != tt.code || d.Page != tt.page {
				t.Errorf("Decide = %+v, want class %s, %d %s, page %v", d, tt.class, tt.status, tt.code, tt.page)
			}
			if d.Message == "" {
				t.Error("no message for the API")
			}
		})
	}
	for c := range policy {
		if Policy(c).Class != c {
			t.Errorf("Policy(%s).Class = %s", c, Policy(c).Class)
		}
	}
}

func TestVerified(t *testing.T) {
	st := lease.State{VerifiedFP: "fp", VerifiedAt: now0}
	tests := []struct {
		name string
		fp   string
		at   time.Time
		want bool
	}{
		{"just verified", "fp", now0, true},
		{"within VerifiedFor", "fp", now0.Add(DefaultVerifiedFor - time.Second), true},
		{"after VerifiedFor", "fp", now0.Add(DefaultVerifiedFor), false},
		{"another token", "other", now0, false},
		{"no token", "", now0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := verified(cfg0, st, tt.fp, tt.at); got != tt.want {
				t.Errorf("verified = %v, want %v", got, tt.want)
			}
		})
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func sameTime(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}

// last_error, which status shows every consumer, keeps the class's short
// message and WeChat's errcode, never the error's own text: AWS errors name
// ARNs and request IDs, WeChat's errmsg the egress IP.
func TestLastErrorHoldsNoCauseText(t *testing.T) {
	awsErr := fmt.Errorf("lease: update state#shop: %w: operation error DynamoDB: UpdateItem, https response error StatusCode: 400, RequestID: ABC123, api error ThrottlingException: arn:aws:dynamodb:us-east-1:123456789012:table/wxtoken", lease.ErrUnavailable)
	ipErr := fmt.Errorf("refresh: %w", &wechat.Error{Op: wechat.OpToken, Code: 40164, Msg: "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist rid: 6543"})
	tests := []struct {
		name    string
		err     error
		want    string
		notWant []string
	}{
		{"AWS error", awsErr, Policy(ClassUnavailable).Message, []string{"arn:", "RequestID", "ABC123", "state#"}},
		{"WeChat refusal", ipErr, "errcode 40164: " + Policy(ClassConfig).Message, []string{"203.0.113.7", "rid"}},
		{"internal", errors.New("open /var/task/x: no such file"), Policy(ClassInternal).Message, []string{"/var/task"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := failureFields(cfg0, testApp(registry.Classic), onDemand, tt.err, now0, 7)
			got := ""
			if f.LastError != nil {
				got = *f.LastError
			}
			if got != tt.want {
				t.Errorf("last_error %q, want %q", got, tt.want)
			}
			for _, s := range tt.notWant {
				if strings.Contains(got, s) {
					t.Errorf("last_error %q holds %q", got, s)
				}
			}
		})
	}
}
