package main

import (
	"fmt"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

// cmdAppsUnblock ends an app's pause, and its tickets' pauses, and asks for
// a token (the tickets are fetched by the next scheduled run).
func cmdAppsUnblock(s *session, args []string) error {
	name, be, err := s.appArgs(args, nil)
	if err != nil {
		return err
	}
	item, err := be.registered(s.ctx, name)
	if err != nil {
		return err
	}
	// A registration the scheduled run rejects has no tickets to unblock;
	// its token's pause is still ended.
	app, _ := registry.Decode(name, item)
	st, err := be.state(s.ctx, name)
	if err != nil {
		return err
	}
	now := s.now()
	was := viewOf(registry.App{Name: name}, st, now)
	ended := paused(st, now)
	if ended {
		if err := be.clearBlocks(s.ctx, name); err != nil {
			return err
		}
	}
	var tickets []string // the tickets whose pause ended
	for _, t := range app.Tickets.List() {
		key := registry.Credential{App: name, Ticket: t}.Key()
		tst, err := be.state(s.ctx, key)
		if err != nil {
			return err
		}
		if paused(tst, now) {
			if err := be.clearBlocks(s.ctx, key); err != nil {
				return err
			}
			tickets = append(tickets, string(t))
		}
	}
	rep, code := s.askToken(s.ctx, be, name)
	if s.opts.json {
		if err := printJSON(s.out, struct {
			App         string      `json:"app"`
			PauseEnded  bool        `json:"pause_ended"`
			PausedUntil any         `json:"was_paused_until"`
			Tickets     []string    `json:"ticket_pauses_ended,omitempty"`
			Token       tokenReport `json:"token"`
		}{name, ended, was.PausedUntil, tickets, rep}); err != nil {
			return err
		}
	} else {
		if ended {
			until := was.PausedUntil
			if until == nil {
				until = was.ForcePausedUntil
			}
			fmt.Fprintf(s.out, "Ended the pause of %s (it was paused until %s after %s).\n", name, when(*until, now), lastErrorCell(was.LastError))
		} else if len(tickets) == 0 {
			fmt.Fprintf(s.out, "%s was not paused; nothing to unblock.\n", name)
		}
		for _, t := range tickets {
			fmt.Fprintf(s.out, "Ended the pause of %s's %s ticket; the next scheduled run fetches it.\n", name, t)
		}
		rep.print(s.out, s.now())
	}
	if code != ExitOK {
		return &cliError{code: code, msg: fmt.Sprintf("no token for %s yet (see above)", name)}
	}
	return nil
}
