package main

import (
	"fmt"
)

// cmdToken prints an app's live token, with a warning on stderr.
func cmdToken(s *session, args []string) error {
	name, be, err := s.appArgs(args, nil)
	if err != nil {
		return err
	}
	tok, version, err := be.token(s.ctx, name)
	if err != nil {
		return err
	}
	st, err := be.state(s.ctx, name)
	if err != nil {
		return err
	}
	now := s.now()
	expiry := "expiry unknown"
	if st.HasToken() && st.Version == version && !st.ExpiresAt.IsZero() {
		expiry = "expires " + when(st.ExpiresAt, now)
	}
	fmt.Fprintf(s.errOut, "wxtoken: warning: this is the live access token of %s (version %d, %s). Anyone holding it can call WeChat as this account until it expires: keep it out of chats, tickets and logs.\n", name, version, expiry)
	if s.opts.json {
		return printJSON(s.out, struct {
			App         string `json:"app"`
			AccessToken string `json:"access_token"`
			Version     int64  `json:"version"`
			ExpiresAt   any    `json:"expires_at"`
		}{name, tok, version, at(st.ExpiresAt)})
	}
	fmt.Fprintln(s.out, tok)
	return nil
}
