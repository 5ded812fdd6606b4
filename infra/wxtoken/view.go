package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/registry"
)

// appView is what the command shows of an app: its registration and its
// state, never the token or the secret.
type appView struct {
	Name           string `json:"name"`
	AppID          string `json:"appid,omitempty"`
	Kind           string `json:"kind,omitempty"`
	Mode           string `json:"mode,omitempty"`
	RefreshMarginS int64  `json:"refresh_margin_s,omitempty"`
	DailyBudget    int    `json:"daily_budget,omitempty"`
	MinIntervalS   int64  `json:"min_interval_s,omitempty"`
	Disabled       bool   `json:"disabled"`
	// Tickets are the tickets the app keeps fresh beside its token.
	Tickets []string `json:"tickets,omitempty"`
	// Invalid is why the scheduled run rejects the registration.
	Invalid string `json:"invalid,omitempty"`

	Generation  int64      `json:"generation"`
	Fingerprint string     `json:"fingerprint,omitempty"`
	FetchedAt   *time.Time `json:"fetched_at,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	ExpiresInS  *int64     `json:"expires_in_s,omitempty"`
	CallsToday  int        `json:"calls_today"`
	// PausedUntil: no WeChat call before then (after a quota or
	// configuration error); ForcePausedUntil: no forced call.
	PausedUntil      *time.Time `json:"paused_until,omitempty"`
	ForcePausedUntil *time.Time `json:"force_paused_until,omitempty"`
	LastError        *errorView `json:"last_error,omitempty"`
	DriftCount       int        `json:"drift_count"`
	LastDriftAt      *time.Time `json:"last_drift_at,omitempty"`
	RefreshingUntil  *time.Time `json:"refresh_in_progress_until,omitempty"`

	// Set by show only: each ticket's state.
	TicketStates []ticketView `json:"ticket_states,omitempty"`
	// Set by list only: each ticket as a row of the table, named by its
	// credential key (app#ticket), as the metrics and the schedule's log
	// name it.
	TicketRows []appView `json:"ticket_rows,omitempty"`
	// Set by show only: what the last error means and what to do, and
	// what to do about drift.
	Advice        *advice `json:"advice,omitempty"`
	DriftAdvice   string  `json:"drift_advice,omitempty"`
	TokenVersion  *int64  `json:"token_version,omitempty"`
	Published     *bool   `json:"published,omitempty"`
	SecretVersion *int64  `json:"secret_version,omitempty"`
}

// ticketView is one ticket's state, never the ticket.
type ticketView struct {
	Ticket      string     `json:"ticket"`
	Parameter   string     `json:"parameter"`
	Version     int64      `json:"version"`
	Published   bool       `json:"published"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	CallsToday  int        `json:"calls_today"`
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	LastError   *errorView `json:"last_error,omitempty"`
}

// ticketViewOf shows a ticket's state st and published version at now.
func ticketViewOf(t registry.Ticket, parameter string, st lease.State, version int64, now time.Time) ticketView {
	v := viewOf(registry.App{}, st, now)
	return ticketView{Ticket: string(t), Parameter: parameter, Version: version,
		Published: version > 0 && st.HasToken() && st.Version == version,
		ExpiresAt: v.ExpiresAt, CallsToday: v.CallsToday, PausedUntil: v.PausedUntil, LastError: v.LastError}
}

// ticketRowsOf shows a's tickets as rows of the apps table, from the
// states by credential key; a ticket the scheduled run rejects (conflicts,
// by registry.TicketConflicts) is shown invalid with the reason.
func ticketRowsOf(a registry.App, states map[string]lease.State, conflicts map[registry.Credential]error, now time.Time) []appView {
	var rows []appView
	for _, t := range a.Tickets.List() {
		c := registry.Credential{App: a.Name, Ticket: t}
		v := viewOf(registry.App{}, states[c.Key()], now)
		v.Name, v.Kind, v.Mode, v.DailyBudget, v.Disabled = c.Key(), "ticket", "-", registry.DefaultTicketBudget, a.Disabled
		var ie *registry.InvalidError
		if errors.As(conflicts[c], &ie) {
			v.Invalid = ie.Reason
		}
		rows = append(rows, v)
	}
	return rows
}

// errorView is an app's last failed refresh.
type errorView struct {
	Class   string     `json:"class,omitempty"`
	Errcode int        `json:"wechat_errcode,omitempty"`
	Message string     `json:"message"`
	At      *time.Time `json:"at,omitempty"`
}

var beijing = time.FixedZone("CST", 8*3600)

// beijingDay is the date WeChat's daily quotas (and the state's
// calls_today) count in.
func beijingDay(t time.Time) string { return t.In(beijing).Format(time.DateOnly) }

func at(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// registrationView shows a registration alone.
func registrationView(a registry.App) appView {
	v := appView{Name: a.Name, AppID: a.AppID, Kind: string(a.Kind), Mode: string(a.Mode),
		RefreshMarginS: int64(a.RefreshMargin / time.Second), DailyBudget: a.DailyBudget,
		MinIntervalS: int64(a.MinInterval / time.Second), Disabled: a.Disabled}
	for _, t := range a.Tickets.List() {
		v.Tickets = append(v.Tickets, string(t))
	}
	return v
}

// viewOf shows an app's registration and state at now.
func viewOf(a registry.App, st lease.State, now time.Time) appView {
	v := registrationView(a)
	v.Generation, v.Fingerprint = st.Generation, st.Fingerprint
	v.FetchedAt, v.ExpiresAt = at(st.FetchedAt), at(st.ExpiresAt)
	if !st.ExpiresAt.IsZero() {
		left := int64(st.ExpiresAt.Sub(now) / time.Second)
		v.ExpiresInS = &left
	}
	if st.CallsDay == beijingDay(now) {
		v.CallsToday = st.CallsToday
	}
	if st.BlockedUntil.After(now) {
		v.PausedUntil = at(st.BlockedUntil)
	}
	if st.ForceBlockedUntil.After(now) {
		v.ForcePausedUntil = at(st.ForceBlockedUntil)
	}
	if st.LastError != "" || st.LastErrCode != 0 {
		v.LastError = &errorView{Class: st.LastErrorClass, Errcode: st.LastErrCode, Message: st.LastError, At: at(st.LastErrorAt)}
	}
	v.DriftCount, v.LastDriftAt = st.DriftCount, at(st.LastDriftAt)
	if st.Leased(now) {
		v.RefreshingUntil = at(st.LeaseUntil)
	}
	return v
}

// paused reports whether a state holds a pause at now.
func paused(st lease.State, now time.Time) bool {
	return st.BlockedUntil.After(now) || st.ForceBlockedUntil.After(now)
}

// human formats a duration for people: "1h59m", "3m05s", "45s".
func human(d time.Duration) string {
	if d < 0 {
		return "-" + human(-d)
	}
	d = d.Round(time.Second)
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}

// when formats a time with its distance from now.
func when(t, now time.Time) string {
	stamp := t.UTC().Format("2006-01-02 15:04:05 UTC")
	if t.Before(now) {
		return fmt.Sprintf("%s (%s ago)", stamp, human(now.Sub(t)))
	}
	return fmt.Sprintf("%s (in %s)", stamp, human(t.Sub(now)))
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
