package main

import (
	"fmt"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

// cmdAppsUnblock ends an app's pause and asks for a token.
func cmdAppsUnblock(s *session, args []string) error {
	name, be, err := s.appArgs(args, nil)
	if err != nil {
		return err
	}
	if _, err := be.registered(s.ctx, name); err != nil {
		return err
	}
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
	rep, code := s.askToken(s.ctx, be, name)
	if s.opts.json {
		if err := printJSON(s.out, struct {
			App         string      `json:"app"`
			PauseEnded  bool        `json:"pause_ended"`
			PausedUntil any         `json:"was_paused_until"`
			Token       tokenReport `json:"token"`
		}{name, ended, was.PausedUntil, rep}); err != nil {
			return err
		}
	} else {
		if ended {
			until := was.PausedUntil
			if until == nil {
				until = was.ForcePausedUntil
			}
			fmt.Fprintf(s.out, "Ended the pause of %s (it was paused until %s after %s).\n", name, when(*until, now), lastErrorCell(was.LastError))
		} else {
			fmt.Fprintf(s.out, "%s was not paused; nothing to unblock.\n", name)
		}
		rep.print(s.out, s.now())
	}
	if code != ExitOK {
		return &cliError{code: code, msg: fmt.Sprintf("no token for %s yet (see above)", name)}
	}
	return nil
}
