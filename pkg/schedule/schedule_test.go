package schedule_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/schedule"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

var now = time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)

type fakeRefresher struct {
	rep refresh.Report
	err error
}

func (f fakeRefresher) RefreshDue(context.Context) (refresh.Report, error) { return f.rep, f.err }

type fakeMetrics struct {
	shortest  time.Duration
	life      map[string]time.Duration
	attention int
}

func (m *fakeMetrics) RemainingLife(shortest time.Duration, low map[string]time.Duration) {
	m.shortest, m.life = shortest, low
}
func (m *fakeMetrics) NeedingAttention(n int) { m.attention = n }

func wechatErr(code int, msg string) error {
	return fmt.Errorf("refresh: shop: %w", &wechat.Error{Op: wechat.OpStableToken, Code: code, Msg: msg})
}

func TestNeedsAPerson(t *testing.T) {
	later := now.Add(time.Hour)
	soon := now.Add(5 * time.Minute)
	tests := []struct {
		name    string
		outcome refresh.Outcome
		want    string // substring of the error; "" for no error
	}{
		{"refreshed", refresh.Outcome{App: "shop", Status: refresh.StatusRefreshed, ExpiresAt: later}, ""},
		{"not due", refresh.Outcome{App: "shop", Status: refresh.StatusNotDue, ExpiresAt: later}, ""},
		{"busy", refresh.Outcome{App: "shop", Status: refresh.StatusBusy, ExpiresAt: later}, ""},
		{"transient failure with time left", refresh.Outcome{App: "shop", Status: refresh.StatusFailed, ExpiresAt: later,
			Err: fmt.Errorf("refresh: shop: %w", &wechat.TransportError{Op: wechat.OpToken, Err: errors.New("timeout")})}, ""},
		{"transient failure near expiry", refresh.Outcome{App: "shop", Status: refresh.StatusFailed, ExpiresAt: soon,
			Err: wechatErr(-1, "system error")}, "expires soon"},
		{"transient failure of a first fetch", refresh.Outcome{App: "shop", Status: refresh.StatusFailed, Err: wechatErr(-1, "system error")}, "expires soon"},
		{"whitelist", refresh.Outcome{App: "shop", Status: refresh.StatusFailed, ExpiresAt: later,
			Err: wechatErr(40164, "invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist rid: 1")}, "add 203.0.113.9 to the app's IP whitelist"},
		{"bad secret", refresh.Outcome{App: "shop", Status: refresh.StatusFailed, ExpiresAt: later, Err: wechatErr(40125, "invalid appsecret")}, "40125"},
		{"daily quota", refresh.Outcome{App: "shop", Status: refresh.StatusFailed, ExpiresAt: later, Err: wechatErr(45009, "reach max api daily quota limit")}, "45009"},
		{"budget used up", refresh.Outcome{App: "shop", Status: refresh.StatusRefused, ExpiresAt: later,
			Err: &refresh.RefusedError{App: "shop", Reason: refresh.ReasonDailyBudget, RetryAfter: time.Hour}}, "daily budget"},
		{"paused after a configuration error", refresh.Outcome{App: "shop", Status: refresh.StatusRefused, ExpiresAt: later,
			Err: &refresh.RefusedError{App: "shop", Reason: refresh.ReasonBlocked, ErrCode: 40164}}, "errcode 40164"},
		{"minute quota clears itself", refresh.Outcome{App: "shop", Status: refresh.StatusRefused, ExpiresAt: later,
			Err: &refresh.RefusedError{App: "shop", Reason: refresh.ReasonBlocked, ErrCode: 45011, Class: refresh.ClassMinuteQuota}}, ""},
		{"malformed registration", refresh.Outcome{App: "shop", Status: refresh.StatusInvalid,
			Err: &registry.InvalidError{App: "shop", Reason: "kind \"blog\" is not offiaccount, miniprogram or wecom"}}, "registration is rejected: registry: app shop: kind"},
		{"a holder found the registration rejected", refresh.Outcome{App: "shop#jsapi", Status: refresh.StatusFailed, ExpiresAt: later,
			Err: fmt.Errorf("refresh: shop#jsapi: %w", &registry.InvalidError{App: "shop", Reason: "tickets: a-shop also registers account wx1"})}, "the registration is rejected: "},
		{"WeCom's frequency limit clears itself", refresh.Outcome{App: "corp", Status: refresh.StatusFailed, ExpiresAt: later, Err: &wechat.Error{Op: wechat.OpWeComToken, Code: 45009, Msg: "api freq out of limit"}}, ""},
		{"deferred with time left", refresh.Outcome{App: "shop", Status: refresh.StatusDeferred, ExpiresAt: later}, ""},
		{"deferred and expired", refresh.Outcome{App: "shop", Status: refresh.StatusDeferred, ExpiresAt: now.Add(-time.Minute)}, "no time left"},
		{"deferred before any token", refresh.Outcome{App: "shop", Status: refresh.StatusDeferred}, "no time left"},
		{"busy with time left", refresh.Outcome{App: "shop", Status: refresh.StatusBusy, ExpiresAt: soon}, ""},
		{"busy and expired", refresh.Outcome{App: "shop", Status: refresh.StatusBusy, ExpiresAt: now.Add(-time.Second)}, "has expired"},
		{"blocked after a configuration error, every run", refresh.Outcome{App: "shop", Status: refresh.StatusBlocked, ExpiresAt: later,
			Err: &refresh.RefusedError{App: "shop", Reason: refresh.ReasonBlocked, ErrCode: 40125, Class: refresh.ClassConfig, RetryAfter: 20 * time.Minute}}, "errcode 40125 (config)"},
		{"blocked on the daily quota", refresh.Outcome{App: "shop", Status: refresh.StatusBlocked, ExpiresAt: later,
			Err: &refresh.RefusedError{App: "shop", Reason: refresh.ReasonBlocked, ErrCode: 45009, Class: refresh.ClassDailyQuota, RetryAfter: 5 * time.Hour}}, "45009"},
		{"blocked a minute on 45011", refresh.Outcome{App: "shop", Status: refresh.StatusBlocked, ExpiresAt: later,
			Err: &refresh.RefusedError{App: "shop", Reason: refresh.ReasonBlocked, ErrCode: 45011, Class: refresh.ClassMinuteQuota, RetryAfter: 30 * time.Second}}, ""},
		{"blocked on 45011 near expiry", refresh.Outcome{App: "shop", Status: refresh.StatusBlocked, ExpiresAt: soon,
			Err: &refresh.RefusedError{App: "shop", Reason: refresh.ReasonBlocked, ErrCode: 45011, Class: refresh.ClassMinuteQuota, RetryAfter: 30 * time.Second}}, "45011"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeMetrics{}
			var logs bytes.Buffer
			h := &schedule.Handler{
				Refresher: fakeRefresher{rep: refresh.Report{Apps: 1, Outcomes: []refresh.Outcome{tt.outcome}}},
				Metrics:   m, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Now: func() time.Time { return now },
			}
			sum, err := h.Handle(context.Background(), []byte(`{"id":"e1","detail-type":"Scheduled Event","source":"aws.events"}`))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
			wantN := 0
			if tt.want != "" {
				wantN = 1
			}
			if len(sum.NeedsAttention) != wantN || m.attention != wantN {
				t.Errorf("needs attention %v (metric %d), want %d", sum.NeedsAttention, m.attention, wantN)
			}
			if sum.Counts[string(tt.outcome.Status)] != 1 {
				t.Errorf("counts %v", sum.Counts)
			}
			if left := tt.outcome.ExpiresAt.Sub(now); !tt.outcome.ExpiresAt.IsZero() {
				_, perApp := m.life["shop"]
				if m.shortest != left || perApp != (left < schedule.DefaultNearExpiry) {
					t.Errorf("remaining life: shortest %v per-app %v; want %v, per-app only under %v", m.shortest, perApp, left, schedule.DefaultNearExpiry)
				}
			}
			if !strings.Contains(logs.String(), `"msg":"scheduled run done"`) {
				t.Errorf("no summary line:\n%s", logs.String())
			}
		})
	}
}

func TestErrorNamesAFewApps(t *testing.T) {
	var outs []refresh.Outcome
	for i := range 8 {
		outs = append(outs, refresh.Outcome{App: fmt.Sprintf("app%d", i), Status: refresh.StatusFailed, Err: wechatErr(40013, "invalid appid")})
	}
	h := &schedule.Handler{Refresher: fakeRefresher{rep: refresh.Report{Apps: 8, Outcomes: outs}}}
	_, err := h.Handle(context.Background(), []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "8 app(s) need attention") || !strings.Contains(err.Error(), "and 3 more") ||
		strings.Contains(err.Error(), "app7") {
		t.Errorf("error %v: want the count, five names and 'and 3 more'", err)
	}
}

func TestBadEventsAndListing(t *testing.T) {
	ok := fakeRefresher{rep: refresh.Report{}}
	for _, ev := range []string{`[]`, `"x"`, `null`, `42`} {
		if _, err := (&schedule.Handler{Refresher: ok}).Handle(context.Background(), []byte(ev)); err == nil {
			t.Errorf("event %s: no error", ev)
		}
	}
	broken := fakeRefresher{err: errors.New("registry: scan wxtoken: throttled")}
	if _, err := (&schedule.Handler{Refresher: broken}).Handle(context.Background(), []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "throttled") {
		t.Errorf("listing failure: %v", err)
	}
	var logs bytes.Buffer
	h := &schedule.Handler{Refresher: ok, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	if _, err := h.Handle(context.Background(), []byte(`{"detail-type":"Parameter Store Change","source":"aws.ssm"}`)); err != nil {
		t.Errorf("another event type: %v", err)
	}
	if !strings.Contains(logs.String(), "unexpected event type") {
		t.Errorf("no warning for an unexpected event type:\n%s", logs.String())
	}
}

// TestScheduleEvents drives the handler with every schedule sample in
// events/: the EventBridge event and a hand-run {} are runs, the malformed
// one is an error.
func TestScheduleEvents(t *testing.T) {
	want := map[string]bool{ // file -> error expected
		"schedule.json":           false,
		"schedule-manual.json":    false,
		"schedule-malformed.json": true,
	}
	files, _ := filepath.Glob("../../events/schedule*.json")
	if len(files) != len(want) {
		t.Errorf("events/schedule*.json holds %d files, this test knows %d", len(files), len(want))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			wantErr, ok := want[name]
			if !ok {
				t.Fatalf("%s has no expectation here; add one", name)
			}
			payload, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			calls := 0
			h := &schedule.Handler{Refresher: refresherFunc(func() { calls++ })}
			_, err = h.Handle(context.Background(), payload)
			if (err != nil) != wantErr || (calls == 1) == wantErr {
				t.Errorf("error %v, refresher runs %d; want error: %v", err, calls, wantErr)
			}
		})
	}
}

type refresherFunc func()

func (f refresherFunc) RefreshDue(context.Context) (refresh.Report, error) {
	f()
	return refresh.Report{}, nil
}

// TestDeadlineHeadroom: the refresher's context ends before Lambda's
// deadline, leaving time to answer and to release a lease.
func TestDeadlineHeadroom(t *testing.T) {
	var got time.Time
	h := &schedule.Handler{Refresher: deadlineSpy{&got}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	dl, _ := ctx.Deadline()
	if _, err := h.Handle(ctx, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if got.IsZero() || dl.Sub(got) < schedule.Headroom {
		t.Errorf("refresher deadline %v, Lambda's %v: want at least %v headroom", got, dl, schedule.Headroom)
	}
}

type deadlineSpy struct{ got *time.Time }

func (d deadlineSpy) RefreshDue(ctx context.Context) (refresh.Report, error) {
	*d.got, _ = ctx.Deadline()
	return refresh.Report{}, nil
}

// TestShortestLife: the run reports its shortest token life, and per app
// only the apps near expiry.
func TestShortestLife(t *testing.T) {
	m := &fakeMetrics{}
	rep := refresh.Report{Apps: 3, Outcomes: []refresh.Outcome{
		{App: "a", Status: refresh.StatusNotDue, ExpiresAt: now.Add(90 * time.Minute)},
		{App: "b", Status: refresh.StatusNotDue, ExpiresAt: now.Add(4 * time.Minute)},
		{App: "c", Status: refresh.StatusNotDue, ExpiresAt: now.Add(30 * time.Minute)},
	}}
	h := &schedule.Handler{Refresher: fakeRefresher{rep: rep}, Metrics: m, Now: func() time.Time { return now }}
	if _, err := h.Handle(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if m.shortest != 4*time.Minute || len(m.life) != 1 || m.life["b"] != 4*time.Minute {
		t.Errorf("shortest %v, per app %v; want 4m and only b", m.shortest, m.life)
	}
}
