// Package schedule is the scheduled function's handler: on every EventBridge
// tick it refreshes the apps that are due, logs one line per app that did
// something, records each app's remaining token life as a metric, and fails
// the invocation (so that Lambda's Errors metric and the alarm on it fire)
// only when something needs a person: a configuration error WeChat reported
// (a secret, the IP whitelist, a frozen app...), a used-up quota or budget, a
// malformed registration, or a token about to expire that could not be
// refreshed. Transient failures are retried by the next run, minutes before
// they matter, and do not fail the invocation.
package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// DefaultNearExpiry is how close to expiry a failing app needs a person.
const DefaultNearExpiry = 10 * time.Minute

// Headroom is cut from the invocation's deadline before refreshing, so that
// a refresh cut short still releases its lease and the function still
// answers before Lambda stops it.
const Headroom = 3 * time.Second

// Refresher is what the schedule needs of the refresher.
type Refresher interface {
	RefreshDue(ctx context.Context) (refresh.Report, error)
}

// Metrics is what the schedule records: the shortest token life of the run
// and the lives of the apps within NearExpiry; the number of apps that need
// a person.
type Metrics interface {
	RemainingLife(shortest time.Duration, low map[string]time.Duration)
	NeedingAttention(n int)
}

// Handler handles scheduled events. Set Refresher; the rest is optional.
type Handler struct {
	Refresher Refresher
	Metrics   Metrics      // nil: none
	Logger    *slog.Logger // nil: discard
	Now       func() time.Time
	// NearExpiry: a failing app whose token expires within this needs a
	// person. Zero means DefaultNearExpiry.
	NearExpiry time.Duration
}

// Summary is the invocation's answer: counts by outcome and the apps that
// need a person.
type Summary struct {
	Apps           int            `json:"apps"`
	Counts         map[string]int `json:"counts"`
	NeedsAttention []Attention    `json:"needs_attention"`
	ElapsedMS      int64          `json:"elapsed_ms"`
}

// Attention is an app that needs a person, and why.
type Attention struct {
	App    string `json:"app"`
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// event is the part of an EventBridge scheduled event that is logged. Any
// JSON object is accepted, so that an operator can run the function by hand
// with {}.
type event struct {
	ID         string
	DetailType string
	Source     string
	Time       string
}

// readEvent picks the logged fields out of an event's members. A member that
// is not a string reads as "" rather than failing the run: any JSON object
// is an event.
func readEvent(members map[string]json.RawMessage) event {
	str := func(name string) string {
		var s string
		_ = json.Unmarshal(members[name], &s)
		return s
	}
	return event{ID: str("id"), DetailType: str("detail-type"), Source: str("source"), Time: str("time")}
}

// Handle runs one scheduled refresh, ending Headroom before ctx's deadline.
// It returns an error when the event is not a JSON object, a wrapped error
// of the Refresher when the apps cannot be listed, and an error naming the
// apps that need a person (see the package comment).
func (h *Handler) Handle(ctx context.Context, raw json.RawMessage) (Summary, error) {
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var members map[string]json.RawMessage
	trimmed := strings.TrimSpace(string(raw))
	if !strings.HasPrefix(trimmed, "{") || json.Unmarshal(raw, &members) != nil {
		return Summary{}, errors.New("schedule: the event is not a JSON object (expected an EventBridge scheduled event, or {} to run by hand)")
	}
	ev := readEvent(members)
	log = log.With("event_id", ev.ID)
	if ev.DetailType != "" && ev.DetailType != "Scheduled Event" {
		log.WarnContext(ctx, "unexpected event type; running the scheduled refresh anyway", "detail_type", ev.DetailType, "source", ev.Source)
	}

	runCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, dl.Add(-Headroom))
		defer cancel()
	}
	rep, err := h.Refresher.RefreshDue(runCtx)
	if err != nil {
		log.ErrorContext(ctx, "scheduled run failed: could not list apps", "error", err.Error())
		return Summary{}, fmt.Errorf("schedule: %w", err)
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	near := h.NearExpiry
	if near <= 0 {
		near = DefaultNearExpiry
	}
	sum := Summary{Apps: rep.Apps, Counts: map[string]int{}, NeedsAttention: []Attention{}, ElapsedMS: rep.Elapsed.Milliseconds()}
	var shortest time.Duration
	lives, low := 0, map[string]time.Duration{}
	for _, o := range rep.Outcomes {
		sum.Counts[string(o.Status)]++
		if o.App != "" && !o.ExpiresAt.IsZero() {
			left := o.ExpiresAt.Sub(now)
			if lives == 0 || left < shortest {
				shortest = left
			}
			lives++
			if left < near {
				low[o.App] = left
			}
		}
		reason, needs := attention(o, now, near)
		if needs {
			sum.NeedsAttention = append(sum.NeedsAttention, Attention{App: o.App, Status: string(o.Status), Reason: reason})
		}
		attrs := []any{"app", o.App, "status", o.Status}
		if !o.ExpiresAt.IsZero() {
			attrs = append(attrs, "expires_at", o.ExpiresAt, "expires_in_s", int64(o.ExpiresAt.Sub(now).Seconds()))
		}
		if o.Err != nil {
			attrs = append(attrs, "error", o.Err.Error())
		}
		switch {
		case needs:
			log.ErrorContext(ctx, "app needs attention: "+reason, append(attrs, "event", "app_needs_attention")...)
		case o.Status == refresh.StatusFailed || o.Status == refresh.StatusRefused || o.Status == refresh.StatusDeferred || o.Status == refresh.StatusBlocked:
			log.WarnContext(ctx, "app not refreshed; the next run retries", append(attrs, "event", "app_not_refreshed")...)
		case o.Status == refresh.StatusRefreshed:
			log.InfoContext(ctx, "app refreshed", append(attrs, "event", "app_refreshed", "version", o.Result.Version)...)
		}
	}
	if h.Metrics != nil {
		if lives > 0 {
			h.Metrics.RemainingLife(shortest, low)
		}
		h.Metrics.NeedingAttention(len(sum.NeedsAttention))
	}
	log.InfoContext(ctx, "scheduled run done", "event", "scheduled_run", "apps", rep.Apps, "counts", sum.Counts,
		"needs_attention", len(sum.NeedsAttention), "elapsed_ms", sum.ElapsedMS)
	if len(sum.NeedsAttention) > 0 {
		return sum, attentionError(sum.NeedsAttention)
	}
	return sum, nil
}

// attention decides whether an outcome needs a person: what the refresh
// policy pages for (refresh.Decision.Page), an exhausted budget, a malformed
// registration, and any failure, pause or deferral while the token is about
// to expire.
func attention(o refresh.Outcome, now time.Time, near time.Duration) (string, bool) {
	expiring := o.ExpiresAt.IsZero() || o.ExpiresAt.Sub(now) < near
	switch o.Status {
	case refresh.StatusInvalid:
		return "the registration is rejected: " + errString(o.Err), true
	case refresh.StatusRefused, refresh.StatusBlocked:
		var r *refresh.RefusedError
		if !errors.As(o.Err, &r) {
			return "refused: " + errString(o.Err), true
		}
		switch {
		case r.Reason == refresh.ReasonDailyBudget:
			return "the app's daily budget of WeChat calls is used up; raise daily_budget or find who spends it", true
		case refresh.Decide(r).Page:
			return fmt.Sprintf("calls are paused for %s after errcode %d (%s); fix the cause (see the runbook)",
				r.RetryAfter.Round(time.Second), r.ErrCode, r.Class), true
		case expiring:
			return fmt.Sprintf("the token expires soon and calls are paused for %s after WeChat errcode %d (%s)",
				r.RetryAfter.Round(time.Second), r.ErrCode, r.Class), true
		}
	case refresh.StatusFailed:
		if refresh.ClassOf(o.Err) == refresh.ClassInvalid {
			return "the registration is rejected: " + errString(o.Err), true
		}
		if refresh.Decide(o.Err).Page {
			reason := "WeChat refused: " + errString(o.Err)
			if ip, ok := wechat.WhitelistIP(o.Err); ok && ip != "" {
				reason += " (add " + ip + " to the app's IP whitelist)"
			}
			return reason, true
		}
		if expiring {
			return "the token expires soon (or none was ever published) and the refresh failed: " + errString(o.Err), true
		}
	case refresh.StatusDeferred:
		if expiring {
			return "the token expires soon (or none was ever published) and this run had no time left for it", true
		}
	case refresh.StatusBusy:
		if !o.ExpiresAt.IsZero() && o.ExpiresAt.Before(now) {
			return "the token has expired and another instance holds its refresh", true
		}
	}
	return "", false
}

func errString(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// attentionError lists the apps that need a person, a few by name.
func attentionError(list []Attention) error {
	const shown = 5
	var parts []string
	for i, a := range list {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more (see the logs)", len(list)-shown))
			break
		}
		parts = append(parts, a.App+": "+a.Reason)
	}
	return fmt.Errorf("schedule: %d app(s) need attention: %s", len(list), strings.Join(parts, "; "))
}
