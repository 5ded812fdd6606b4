package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

// secretOnArgv is the refusal of a secret given on the command line.
const secretOnArgv = "the secret is never taken on the command line (it would show in `ps` and stay in your shell history): pipe it on stdin, e.g. `wxtoken apps add NAME ... < secret.txt`, or type it at the prompt. If this shell's history is shared, consider the secret exposed and reset it"

// cmdAppsAdd registers an app.
func cmdAppsAdd(s *session, args []string) error {
	var appid, kind, mode, secretFlag, tickets string
	var budget, margin int
	pos, err := s.parse(args, 1, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&appid, "appid", "", "the appid (WeCom: the corpid)")
		fs.StringVar(&kind, "kind", "", "offiaccount, miniprogram or wecom")
		fs.StringVar(&mode, "mode", "", "stable (default) or classic; WeCom apps always use gettoken")
		fs.IntVar(&budget, "budget", 0, "WeChat token calls wxtoken may make per Beijing day (default 1000 stable/WeCom, 200 classic)")
		fs.IntVar(&margin, "margin", 0, "classic/WeCom: refresh this many seconds before expiry (default 1200)")
		fs.StringVar(&tickets, "tickets", "", "tickets to keep fresh beside the token: jsapi,wx_card (Official Accounts), jsapi,agent_config (WeCom)")
		fs.StringVar(&secretFlag, "secret", "", "refused: the secret is read from stdin only")
	})
	if err != nil {
		return err
	}
	if secretFlag != "" {
		return fail(ExitUsage, secretOnArgv)
	}
	name := pos[0]
	if appid == "" || kind == "" {
		return fail(ExitUsage, "--appid and --kind are required (see `wxtoken apps add --help`)")
	}
	if budget < 0 || margin < 0 {
		return fail(ExitInvalid, "--budget and --margin must be positive")
	}
	set, err := registry.ParseTickets(registry.Kind(kind), tickets)
	if err != nil {
		return fail(ExitInvalid, "refused: %v", err)
	}
	app := registry.App{Name: name, AppID: appid, Kind: registry.Kind(kind), Mode: registry.Mode(mode),
		RefreshMargin: time.Duration(margin) * time.Second, DailyBudget: budget, Tickets: set}
	reg, err := validated(app)
	if err != nil {
		return err
	}

	be, err := s.backend()
	if err != nil {
		return err
	}
	if item, err := be.item(s.ctx, name); err != nil {
		return err
	} else if item != nil {
		return fail(ExitInvalid, "an app named %s is already registered in %s: choose another name, or change it with `wxtoken apps set %s`", name, be.t, name)
	}
	if err := s.unique(be, reg); err != nil {
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
	// The item exactly as registry.Item writes it: settings left out take
	// the registry's defaults.
	if err := be.register(s.ctx, registry.Item(app), name); err != nil {
		return err
	}
	rep, code := s.askToken(s.ctx, be, name)

	key := be.t.KMSKeyID
	if key == "" {
		key = "alias/aws/ssm"
	}
	if s.opts.json {
		if err := printJSON(s.out, struct {
			App        appView     `json:"app"`
			Target     string      `json:"target"`
			Secret     secretJSON  `json:"secret"`
			FirstToken tokenReport `json:"first_token"`
		}{registrationView(reg), be.t.String(), secretJSON{be.store.SecretName(name), version, key}, rep}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(s.out, "Registered %s in %s: %s, %s mode, appid %s, budget %d a day, tickets %s.\n", name, be.t, reg.Kind, reg.Mode, reg.AppID, reg.DailyBudget, ticketsShown(reg.Tickets))
		fmt.Fprintf(s.out, "Secret:   %s (version %d, key %s)\n", be.store.SecretName(name), version, key)
		rep.print(s.out, s.now())
		if code == ExitWeChat {
			fmt.Fprintf(s.out, "The app stays registered; wxtoken pauses its WeChat calls until the fix (see `wxtoken apps show %s`).\n", name)
		}
	}
	if code != ExitOK {
		return &cliError{code: code, msg: fmt.Sprintf("%s is registered, but its first token was not fetched (see above)", name)}
	}
	return nil
}

// secretJSON is where a secret was stored (never its value).
type secretJSON struct {
	Parameter string `json:"parameter"`
	Version   int64  `json:"version"`
	KMSKeyID  string `json:"kms_key_id"`
}

// validated decodes a registration the way the scheduled run will read it
// and checks every rule (pkg/registry's validate.go): ExitInvalid with the
// reasons when it breaks one.
func validated(app registry.App) (registry.App, error) {
	if !registry.ValidName(app.Name) {
		// The name is not echoed: it may be a secret typed in the wrong place.
		return registry.App{}, fail(ExitInvalid, "the app name is not valid: 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit")
	}
	reg, err := registry.Decode(app.Name, registry.Item(app))
	if err == nil {
		err = registry.Validate(reg)
	}
	var ie *registry.InvalidError
	if errors.As(err, &ie) {
		return registry.App{}, fail(ExitInvalid, "refused: %s", ie.Reason)
	}
	if err != nil {
		return registry.App{}, wrap(ExitInvalid, err, "refused")
	}
	return reg, nil
}

// unique refuses app when another registered app has its account, as the
// scheduled run would (registry.Duplicates).
func (s *session) unique(be *backend, app registry.App) error {
	// Every valid registration, duplicates included.
	apps, _, err := be.reg.List(s.ctx)
	if err != nil {
		return wrap(ExitFailed, err, "list the apps of table %s", be.t.Table)
	}
	if err := registry.AccountTaken(apps, app); err != nil {
		var ie *registry.InvalidError
		if errors.As(err, &ie) {
			return fail(ExitInvalid, "refused: %s", ie.Reason)
		}
		return fail(ExitInvalid, "refused: %v", err)
	}
	return nil
}
