package main

import (
	"flag"
	"fmt"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

// cmdAppsSecret replaces an app's secret.
func cmdAppsSecret(s *session, args []string) error {
	var secretFlag string
	pos, err := s.parse(args, 1, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&secretFlag, "secret", "", "refused: the secret is read from stdin only")
	})
	if err != nil {
		return err
	}
	if secretFlag != "" {
		return fail(ExitUsage, "the secret is never taken on the command line (it would show in `ps` and stay in your shell history): pipe it on stdin, e.g. `wxtoken apps secret NAME < secret.txt`. If this shell's history is shared, consider the secret exposed and reset it")
	}
	name := pos[0]
	if !registry.ValidName(name) {
		return fail(ExitNotFound, "no such app: app names are 1-63 characters of a-z, 0-9 and '-'")
	}
	be, err := s.backend()
	if err != nil {
		return err
	}
	if _, err := be.registered(s.ctx, name); err != nil {
		return err
	}
	secret, err := readSecret(s.in, s.errOut, name)
	if err != nil {
		return err
	}
	version, err := be.putSecret(s.ctx, name, secret)
	if err != nil {
		return err
	}
	st, err := be.state(s.ctx, name)
	if err != nil {
		return err
	}
	now := s.now()
	// A pause records the secret's version when it began; the next
	// scheduled run sees the new version and refreshes (pkg/refresh admit).
	pausedBySecret := paused(st, now) && st.BlockedSecretVersion != 0
	note := "wxtoken uses it from its next WeChat call on; the published token stays valid."
	if pausedBySecret {
		note = fmt.Sprintf("The pause caused by the wrong secret (errcode %d) ends by itself at the next scheduled run (within a minute), which fetches a token with the new secret: no unblock needed.", st.LastErrCode)
	}
	if s.opts.json {
		return printJSON(s.out, struct {
			App            string     `json:"app"`
			Secret         secretJSON `json:"secret"`
			PauseEndsAtRun bool       `json:"pause_ends_at_next_run"`
			Note           string     `json:"note"`
		}{name, secretJSON{be.store.SecretName(name), version, keyName(be.t)}, pausedBySecret, note})
	}
	fmt.Fprintf(s.out, "Stored the new secret of %s at %s (version %d, key %s).\n%s\n", name, be.store.SecretName(name), version, keyName(be.t), note)
	return nil
}

// keyName is the KMS key secrets are stored with.
func keyName(t target) string {
	if t.KMSKeyID == "" {
		return "alias/aws/ssm"
	}
	return t.KMSKeyID
}
