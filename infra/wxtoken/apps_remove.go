package main

import (
	"flag"
	"fmt"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/ticket"
)

// cmdAppsRemove deletes an app and what wxtoken keeps of it.
func cmdAppsRemove(s *session, args []string) error {
	var keepSecret bool
	name, be, err := s.appArgs(args, func(fs *flag.FlagSet) {
		fs.BoolVar(&keepSecret, "keep-secret", false, "keep the secret parameter (to register the app again later)")
	})
	if err != nil {
		return err
	}
	item, err := be.item(s.ctx, name)
	if err != nil {
		return err
	}
	st, err := be.state(s.ctx, name)
	if err != nil {
		return err
	}
	tv, err := be.tokenVersion(s.ctx, name)
	if err != nil {
		return err
	}
	sv, err := be.secretVersion(s.ctx, name)
	if err != nil {
		return err
	}
	// A removal that stopped half way is finished by running it again.
	leftover := !st.UpdatedAt.IsZero() || tv > 0 || (sv > 0 && !keepSecret)
	keys := credentialKeys(name)
	for _, key := range keys[1:] {
		ts, err := be.state(s.ctx, key)
		if err != nil {
			return err
		}
		leftover = leftover || !ts.UpdatedAt.IsZero()
	}
	if item == nil && !leftover {
		return notRegistered(name, be.t)
	}
	// Under the leases of the app's token and of every ticket it may keep,
	// no refresh can publish a value or write a state while they are
	// deleted.
	for _, key := range keys {
		if err := be.hold(s.ctx, key); err != nil {
			return err
		}
	}
	if item != nil {
		if err := be.deregister(s.ctx, name); err != nil {
			return err
		}
	}
	tokenDeleted, err := be.deleteParameter(s.ctx, be.store.TokenName(name))
	if err != nil {
		return err
	}
	// The token's rotation meta, and every ticket the app may have kept
	// (the registration may be gone already) with its meta: a missing one
	// is no error.
	for _, key := range keys {
		names := []string{be.store.MetaName(key)}
		if key != name {
			names = append(names, be.store.TokenName(key))
		}
		for _, n := range names {
			if _, err := be.deleteParameter(s.ctx, n); err != nil {
				return err
			}
		}
	}
	secretDeleted := false
	if !keepSecret {
		if secretDeleted, err = be.deleteParameter(s.ctx, be.store.SecretName(name)); err != nil {
			return err
		}
	}
	for _, key := range keys {
		if err := be.deleteState(s.ctx, key); err != nil {
			return err
		}
	}
	if s.opts.json {
		return printJSON(s.out, struct {
			App             string `json:"app"`
			Registration    bool   `json:"registration_deleted"`
			Token           bool   `json:"token_deleted"`
			Secret          bool   `json:"secret_deleted"`
			SecretKept      bool   `json:"secret_kept"`
			StateDeleted    bool   `json:"state_deleted"`
			SecretParameter string `json:"secret_parameter"`
		}{name, item != nil, tokenDeleted, secretDeleted, keepSecret, true, be.store.SecretName(name)})
	}
	fmt.Fprintf(s.out, "Removed %s from %s: registration %s, token %s, state deleted.\n", name, be.t, done(item != nil), done(tokenDeleted))
	if keepSecret {
		fmt.Fprintf(s.out, "The secret stays at %s.\n", be.store.SecretName(name))
	} else {
		fmt.Fprintf(s.out, "Secret %s.\n", done(secretDeleted))
	}
	if tokenDeleted {
		fmt.Fprintf(s.out, "Business servers reading %s now get ParameterNotFound.\n", be.store.TokenName(name))
	}
	return nil
}

// credentialKeys are the keys of every credential app can have: its token
// (the app's name) and each ticket ("app#ticket").
func credentialKeys(app string) []string {
	keys := []string{app}
	for _, t := range ticket.All() {
		keys = append(keys, registry.Credential{App: app, Ticket: t}.Key())
	}
	return keys
}

func done(deleted bool) string {
	if deleted {
		return "deleted"
	}
	return "was absent"
}
