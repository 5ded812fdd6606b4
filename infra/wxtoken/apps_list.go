package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

// cmdAppsList lists every app with its state.
func cmdAppsList(s *session, args []string) error {
	if _, err := s.parse(args, 0, 0, nil); err != nil {
		return err
	}
	be, err := s.backend()
	if err != nil {
		return err
	}
	apps, bad, err := be.apps(s.ctx)
	if err != nil {
		return err
	}
	states, err := be.states(s.ctx)
	if err != nil {
		return err
	}
	now := s.now()
	var views []appView
	conflicts := registry.TicketConflicts(apps)
	for _, a := range apps {
		v := viewOf(a, states[a.Name], now)
		v.TicketRows = ticketRowsOf(a, states, conflicts, now)
		views = append(views, v)
	}
	for _, e := range bad {
		var ie *registry.InvalidError
		if errors.As(e, &ie) {
			views = append(views, appView{Name: ie.App, Invalid: ie.Reason})
		}
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Name < views[j].Name })
	if s.opts.json {
		if views == nil {
			views = []appView{}
		}
		return printJSON(s.out, struct {
			Target string    `json:"target"`
			Apps   []appView `json:"apps"`
		}{be.t.String(), views})
	}
	if len(views) == 0 {
		fmt.Fprintf(s.out, "No apps are registered in %s: add one with `wxtoken apps add`.\n", be.t)
		return nil
	}
	printTable(s.out, views, now)
	return nil
}

// printTable writes the apps as a table for people, each app's tickets on
// rows of their own after it.
func printTable(out io.Writer, views []appView, now time.Time) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tKIND\tMODE\tEXPIRES IN\tCALLS TODAY\tPAUSED UNTIL\tLAST ERROR\tDRIFT")
	var rows []appView
	for _, v := range views {
		rows = append(append(rows, v), v.TicketRows...)
	}
	for _, v := range rows {
		if v.Invalid != "" {
			fmt.Fprintf(w, "%s\tINVALID: %s\t\t\t\t\t\t\n", v.Name, v.Invalid)
			continue
		}
		expires := "no token"
		if v.ExpiresAt != nil {
			expires = human(v.ExpiresAt.Sub(now))
			if v.ExpiresAt.Before(now) {
				expires = "expired"
			}
		}
		if v.Disabled {
			expires += " (disabled)"
		}
		pausedUntil := "-"
		if v.PausedUntil != nil {
			pausedUntil = v.PausedUntil.Format("15:04 UTC") + " (" + human(v.PausedUntil.Sub(now)) + ")"
		} else if v.ForcePausedUntil != nil {
			pausedUntil = "force only, " + v.ForcePausedUntil.Format("15:04 UTC")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%d\n", v.Name, v.Kind, v.Mode, expires, v.CallsToday, v.DailyBudget,
			pausedUntil, lastErrorCell(v.LastError), v.DriftCount)
	}
	_ = w.Flush()
}

// lastErrorCell is the last error's class and errcode, for the table.
func lastErrorCell(e *errorView) string {
	if e == nil {
		return "-"
	}
	parts := []string{}
	if e.Class != "" {
		parts = append(parts, e.Class)
	}
	if e.Errcode != 0 {
		parts = append(parts, fmt.Sprint(e.Errcode))
	}
	if len(parts) == 0 {
		return "error"
	}
	return strings.Join(parts, " ")
}

// cmdAppsShow shows one app.
func cmdAppsShow(s *session, args []string) error {
	name, be, err := s.appArgs(args, nil)
	if err != nil {
		return err
	}
	apps, bad, err := be.apps(s.ctx)
	if err != nil {
		return err
	}
	st, err := be.state(s.ctx, name)
	if err != nil {
		return err
	}
	now := s.now()
	var v *appView
	for _, a := range apps {
		if a.Name == name {
			view := viewOf(a, st, now)
			v = &view
		}
	}
	for _, e := range bad {
		var ie *registry.InvalidError
		if errors.As(e, &ie) && ie.App == name {
			view := viewOf(registry.App{Name: name}, st, now)
			view.Invalid = ie.Reason
			v = &view
		}
	}
	if v == nil {
		return notRegistered(name, be.t)
	}
	tv, err := be.tokenVersion(s.ctx, name)
	if err != nil {
		return err
	}
	sv, err := be.secretVersion(s.ctx, name)
	if err != nil {
		return err
	}
	published := tv > 0 && st.HasToken() && st.Version == tv
	v.TokenVersion, v.SecretVersion, v.Published = &tv, &sv, &published
	for _, t := range v.Tickets {
		key := registry.Credential{App: name, Ticket: registry.Ticket(t)}.Key()
		tst, err := be.state(s.ctx, key)
		if err != nil {
			return err
		}
		ver, err := be.tokenVersion(s.ctx, key)
		if err != nil {
			return err
		}
		v.TicketStates = append(v.TicketStates, ticketViewOf(registry.Ticket(t), be.store.TokenName(key), tst, ver, now))
	}
	if e := v.LastError; e != nil && e.Errcode != 0 {
		ip := ""
		if isWhitelist(e.Errcode) {
			ip = be.refusedIP(s.ctx, v.Name, e.Message)
		}
		a := adviceOf(e.Class, e.Errcode, v.Name, ip)
		v.Advice = &a
	}
	if v.DriftCount > 0 {
		v.DriftAdvice = driftAdvice(v.Name, registry.Mode(v.Mode))
	}
	if s.opts.json {
		return printJSON(s.out, v)
	}
	printShow(s.out, *v, be, now)
	return nil
}

// printShow writes one app for people.
func printShow(out io.Writer, v appView, be *backend, now time.Time) {
	w := tabwriter.NewWriter(out, 0, 0, 1, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(w, "%s:\t"+format+"\n", append([]any{k}, args...)...) }
	line("app", "%s (%s)", v.Name, be.t)
	if v.Invalid != "" {
		line("INVALID", "%s", v.Invalid)
		line("", "the scheduled run skips it and pages; fix it with `wxtoken apps set %s` or remove it", v.Name)
	} else {
		line("account", "%s %s, %s mode", v.Kind, v.AppID, v.Mode)
		line("settings", "refresh margin %ds, budget %d a day, min interval %ds, disabled %t", v.RefreshMarginS, v.DailyBudget, v.MinIntervalS, v.Disabled)
	}
	switch {
	case *v.SecretVersion == 0:
		line("secret", "MISSING at %s: store it with `wxtoken apps secret %s`", be.store.SecretName(v.Name), v.Name)
	default:
		line("secret", "%s (version %d)", be.store.SecretName(v.Name), *v.SecretVersion)
	}
	switch {
	case *v.TokenVersion == 0:
		line("token", "none published at %s", be.store.TokenName(v.Name))
	case !*v.Published:
		line("token", "%s version %d, NOT the committed one (generation %d): the next run repairs it", be.store.TokenName(v.Name), *v.TokenVersion, v.Generation)
	default:
		line("token", "%s version %d (generation %d, fingerprint %s)", be.store.TokenName(v.Name), *v.TokenVersion, v.Generation, v.Fingerprint)
	}
	if v.ExpiresAt != nil {
		line("expires", "%s", when(*v.ExpiresAt, now))
	}
	if v.FetchedAt != nil {
		line("fetched", "%s", when(*v.FetchedAt, now))
	}
	line("calls today", "%d of %d (Beijing day %s)", v.CallsToday, v.DailyBudget, beijingDay(now))
	if v.PausedUntil != nil {
		line("PAUSED", "until %s; `wxtoken apps unblock %s` once the cause is fixed", when(*v.PausedUntil, now), v.Name)
	}
	if v.ForcePausedUntil != nil {
		line("force paused", "until %s (normal refreshes go on)", when(*v.ForcePausedUntil, now))
	}
	if e := v.LastError; e != nil {
		line("last error", "%s", lastErrorCell(e))
		line("", "%s", e.Message)
		if e.At != nil {
			line("", "at %s", when(*e.At, now))
		}
		if a := v.Advice; a != nil {
			line("advice", "%s: %s", a.Problem, a.Fix)
		}
	}
	if v.DriftCount > 0 {
		at := ""
		if v.LastDriftAt != nil {
			at = ", last " + when(*v.LastDriftAt, now)
		}
		line("DRIFT", "%d token(s) rotated behind wxtoken's back%s: something else fetches with this secret", v.DriftCount, at)
		line("", "%s", v.DriftAdvice)
	}
	if v.RefreshingUntil != nil {
		line("refreshing", "a refresh holds the lease until %s", when(*v.RefreshingUntil, now))
	}
	for _, t := range v.TicketStates {
		state := fmt.Sprintf("%s version %d", t.Parameter, t.Version)
		switch {
		case t.Version == 0:
			state = "none published at " + t.Parameter
		case !t.Published:
			state += ", NOT the committed one: the next run repairs it"
		}
		if t.ExpiresAt != nil {
			state += ", expires " + when(*t.ExpiresAt, now)
		}
		line("ticket "+t.Ticket, "%s; calls today %d", state, t.CallsToday)
		if t.PausedUntil != nil {
			line("", "PAUSED until %s", when(*t.PausedUntil, now))
		}
		if t.LastError != nil {
			line("", "last error %s: %s", lastErrorCell(t.LastError), t.LastError.Message)
		}
	}
	_ = w.Flush()
}
