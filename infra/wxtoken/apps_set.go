package main

import (
	"flag"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

// change is one setting an operator changes: the item's attribute and its
// new value (nil removes it, so that the default applies).
type change struct {
	attr  string
	value ddbtypes.AttributeValue
	shown string
}

// setChanges turns the set flags that were given into changes of the item.
func setChanges(given map[string]string) ([]change, error) {
	var out []change
	for _, f := range []string{"appid", "mode", "budget", "margin", "disabled", "tickets"} {
		v, ok := given[f]
		if !ok {
			continue
		}
		switch f {
		case "appid":
			out = append(out, change{"appid", &ddbtypes.AttributeValueMemberS{Value: v}, v})
		case "mode":
			out = append(out, change{"mode", &ddbtypes.AttributeValueMemberS{Value: v}, v})
		case "budget", "margin":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return nil, fail(ExitInvalid, "--%s must be a positive whole number", f)
			}
			attr := map[string]string{"budget": "daily_budget", "margin": "refresh_margin_s"}[f]
			out = append(out, change{attr, &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}, v})
		case "tickets":
			// The names are checked for the app's kind by decodeValid.
			c := change{attr: "tickets", shown: v}
			var names []string
			for _, n := range strings.Split(v, ",") {
				if n = strings.TrimSpace(n); n != "" && n != "none" && !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
			if len(names) > 0 {
				c.value = &ddbtypes.AttributeValueMemberSS{Value: names}
			} else {
				c.shown = "none"
			}
			out = append(out, c)
		case "disabled":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fail(ExitUsage, "--disabled takes true or false")
			}
			c := change{attr: "disabled", shown: strconv.FormatBool(b)}
			if b {
				c.value = &ddbtypes.AttributeValueMemberBOOL{Value: true}
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// applyChanges returns item with the changes made (item is not modified).
func applyChanges(item map[string]ddbtypes.AttributeValue, changes []change) map[string]ddbtypes.AttributeValue {
	out := maps.Clone(item)
	for _, c := range changes {
		if c.value == nil {
			delete(out, c.attr)
		} else {
			out[c.attr] = c.value
		}
	}
	return out
}

// cmdAppsSet changes an app's registration.
func cmdAppsSet(s *session, args []string) error {
	given := map[string]string{}
	var fs *flag.FlagSet
	pos, err := s.parse(args, 1, 1, func(f *flag.FlagSet) {
		fs = f
		f.String("mode", "", "stable or classic")
		f.String("budget", "", "WeChat token calls wxtoken may make per Beijing day")
		f.String("margin", "", "classic/WeCom: refresh this many seconds before expiry")
		f.String("disabled", "", "true: keep the registration but stop refreshing; false: refresh again")
		f.String("appid", "", "a corrected appid (WeCom: corpid)")
		f.String("tickets", "", "the tickets to keep fresh, replacing the list: jsapi,wx_card (Official Accounts), jsapi,agent_config (WeCom); none for none")
		f.String("secret", "", "refused: use `wxtoken apps secret NAME` with the secret on stdin")
	})
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "secret" && isSetFlag(f.Name) {
			given[f.Name] = f.Value.String()
		}
	})
	if fs.Lookup("secret").Value.String() != "" {
		return fail(ExitUsage, "%s", strings.Replace(secretOnArgv, "wxtoken apps add NAME ...", "wxtoken apps secret NAME", 1))
	}
	name := pos[0]
	if !registry.ValidName(name) {
		return fail(ExitNotFound, "no such app: app names are 1-63 characters of a-z, 0-9 and '-'")
	}
	changes, err := setChanges(given)
	if err != nil {
		return err
	}
	if len(changes) == 0 {
		return fail(ExitUsage, "nothing to change: pass --mode, --budget, --margin, --disabled, --appid or --tickets")
	}
	be, err := s.backend()
	if err != nil {
		return err
	}
	item, err := be.registered(s.ctx, name)
	if err != nil {
		return err
	}
	next := applyChanges(item, changes)
	reg, err := decodeValid(name, next, onlyDisabled(changes))
	if err != nil {
		return err
	}
	if err := s.unique(be, reg); err != nil {
		return err
	}
	if err := be.replace(s.ctx, next, name); err != nil {
		return err
	}
	before := map[string]string{}
	if old, err := registry.Decode(name, item); err == nil {
		v := registrationView(old)
		before = map[string]string{"appid": v.AppID, "mode": v.Mode, "daily_budget": strconv.Itoa(v.DailyBudget),
			"refresh_margin_s": strconv.FormatInt(v.RefreshMarginS, 10), "disabled": strconv.FormatBool(v.Disabled),
			"tickets": ticketsShown(old.Tickets)}
	}
	if s.opts.json {
		return printJSON(s.out, struct {
			App appView `json:"app"`
		}{registrationView(reg)})
	}
	var lines []string
	for _, c := range changes {
		old := before[c.attr]
		if old == "" {
			old = "(invalid)"
		}
		lines = append(lines, fmt.Sprintf("%s %s → %s", c.attr, old, c.shown))
	}
	sort.Strings(lines)
	fmt.Fprintf(s.out, "Updated %s: %s.\n", name, strings.Join(lines, ", "))
	if _, ok := given["appid"]; ok {
		fmt.Fprintf(s.out, "The next scheduled run (within a minute) fetches a token for the new account; if WeChat had refused the old appid, run `wxtoken apps unblock %s` first.\n", name)
	} else if _, ok := given["mode"]; ok {
		fmt.Fprintln(s.out, "The next scheduled run (within a minute) fetches a token with the new mode; the current one stays published until then.")
	}
	return nil
}

// isSetFlag reports whether a flag is one of set's own.
func isSetFlag(name string) bool {
	switch name {
	case "mode", "budget", "margin", "disabled", "appid", "tickets":
		return true
	}
	return false
}

// decodeValid decodes a changed item and checks every rule, or, when the
// change only switches the app off or on (disabledOnly), just the rules the
// scheduled run applies: an older registration that a newer rule would
// refuse can still be disabled in an emergency, and enabled again.
func decodeValid(name string, item map[string]ddbtypes.AttributeValue, disabledOnly bool) (registry.App, error) {
	app, err := registry.Decode(name, item)
	if err != nil {
		return registry.App{}, wrap(ExitInvalid, err, "refused")
	}
	if disabledOnly {
		return app, nil
	}
	if err := registry.Validate(app); err != nil {
		return registry.App{}, wrap(ExitInvalid, err, "refused")
	}
	return app, nil
}

// onlyDisabled reports whether changes touch nothing but "disabled".
func onlyDisabled(changes []change) bool {
	for _, c := range changes {
		if c.attr != "disabled" {
			return false
		}
	}
	return true
}

// ticketsShown is a ticket set for people ("none" when empty).
func ticketsShown(t registry.TicketSet) string {
	if t == 0 {
		return "none"
	}
	return t.String()
}
