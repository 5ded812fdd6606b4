package main

import (
	"fmt"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

// cmdAppsUnblock ends an app's pause and asks for a token.
func cmdAppsUnblock(s *session, args []string) error {
	pos, err := s.parse(args, 1, 1, nil)
	if err != nil {
		return err
	}
	name := pos[0]
	if !registry.ValidName(name) {
		return fail(ExitNotFound, "no such app: app names are 1-63 characters of a-z, 0-9 and '-'")
	}
	be, err := s.backend()
	if err != nil {
		return err
	}
	item, err := be.item(s.ctx, name)
	if err != nil {
		return err
	}
	if item == nil {
		return notRegistered(name, be.t)
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
