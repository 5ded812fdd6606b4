package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
	"github.com/wxtoken/wxtoken/pkg/testsupport/runbook"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const readme = "../../../README.md"

// newOperator starts make dev (state under a .cache/dev of a new working
// directory, the schedule every 5 s) and builds the operator command.
func newOperator(t *testing.T) operator {
	t.Helper()
	awstest.Config(t, awstest.DynamoDB, awstest.SSM)
	dir := t.TempDir()
	state := filepath.Join(dir, ".cache", "dev")
	bin := buildWxtoken(t)
	// The function log goes to the leak scan once make dev stopped.
	t.Cleanup(func() {
		logs, err := os.ReadFile(filepath.Join(state, "functions.log"))
		if err != nil {
			t.Errorf("make dev's function log: %v", err)
		}
		_, _ = leakscan.Sink(t, "dev-functions").Write(logs)
	})
	d := launch(t, state, leakscan.Sink(t, "dev"), "5s")
	t.Cleanup(func() { d.stop(t) })
	return operator{dev: d, bin: bin, dir: dir, sink: leakscan.Sink(t, "wxtoken-operator")}
}

// in returns the operator in a working directory of its own whose
// .cache/dev is make dev's, so that `wxtoken --local` finds it as in the
// repository's folder.
func (o operator) in(t *testing.T) operator {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(o.dir, ".cache", "dev"), filepath.Join(dir, ".cache", "dev")); err != nil {
		t.Fatal(err)
	}
	o.dir = dir
	return o
}

// shellLines returns the command lines of the first ```sh block after the
// marker in the README, with backslash continuations joined and comments
// dropped.
func shellLines(t *testing.T, marker string) []string {
	t.Helper()
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("README: no %q", marker)
	}
	text = text[i:]
	start := strings.Index(text, "```sh\n")
	end := strings.Index(text[start+6:], "```")
	if start < 0 || end < 0 {
		t.Fatalf("README: no sh block after %q", marker)
	}
	var lines []string
	cur := ""
	for _, l := range strings.Split(text[start+6:start+6+end], "\n") {
		if c, ok := strings.CutSuffix(l, "\\"); ok {
			cur += c
			continue
		}
		cur += l
		if s := strings.TrimSpace(cur); s != "" && !strings.HasPrefix(s, "#") {
			lines = append(lines, s)
		}
		cur = ""
	}
	return lines
}

// TestReadmeWalkthrough runs the README's make dev walkthrough of the
// operator command as written: the sandbox learns an account, `wxtoken
// --local apps add` registers it and gets its first token, list and show
// describe it.
func TestReadmeWalkthrough(t *testing.T) {
	o := newOperator(t)
	lines := shellLines(t, "Against `make dev` (in another terminal")
	if len(lines) < 4 {
		t.Fatalf("the walkthrough has %d commands: %q", len(lines), lines)
	}
	t.Cleanup(func() { o.wxtoken(t, "", "apps", "remove", "shop") })
	var outs []string
	for _, line := range lines {
		run := strings.ReplaceAll(line, "http://127.0.0.1:8081", o.dev.sandbox)
		out, code := o.sh(t, run, "")
		if code != 0 {
			t.Fatalf("%s\nexit %d:\n%s", masked(line), code, out)
		}
		outs = append(outs, out)
	}
	checks := []struct {
		cmd, want string
	}{
		{"apps add shop", "Token:    published"},
		{"apps list", "shop"},
		{"apps show shop", "offiaccount wx0123456789abcdef, stable mode"},
	}
	for _, c := range checks {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, c.cmd) })
		if i < 0 {
			t.Errorf("the walkthrough has no `%s`", c.cmd)
			continue
		}
		if !strings.Contains(outs[i], c.want) {
			t.Errorf("%s printed no %q:\n%s", masked(lines[i]), c.want, outs[i])
		}
	}
	if v, ok := o.show(t, "shop"); !ok || !healthy(v) {
		t.Errorf("after the walkthrough shop is %+v (registered %v), want a published token and no pause", v, ok)
	}
}

// scenario stages one row of the README's runbook against make dev.
type scenario struct {
	label string        // the row's first cell, as the README writes it
	mode  registry.Mode // classic, or "" for stable
	// allowedIPs is the account's IP whitelist at the sandbox.
	allowedIPs []string
	// before stages the fault before the app is added; wrongSecret and
	// wrongAppID add it with a wrong secret or appid.
	before                  func(t *testing.T, s *scn)
	wrongSecret, wrongAppID bool
	// wantAdd is the exit code of `apps add`; errcode the one it shows.
	wantAdd, errcode int
	// paused: the refusal pauses the app; anyPause: it may or may not
	// (45011's pause ends at the next minute, which may have begun).
	paused, anyPause bool
	// trigger stages the fault after a successful add.
	trigger func(t *testing.T, s *scn)
	// fix is what the operator does outside wxtoken (at WeChat's side).
	fix func(t *testing.T, s *scn)
	// after checks the outcome of the README's commands.
	after func(t *testing.T, s *scn)
}

// scn is one scenario's account and shell.
type scn struct {
	o                   operator
	name, appid, secret string
	outs                []string // output of the README's commands, in order
}

// fault injects a WeChat fault for the scenario's account until cleared.
func (s *scn) fault(t *testing.T, path string, errcode int) {
	s.o.dev.admin(t, http.MethodPost, wechattest.AdminPrefix+"faults", fmt.Sprintf(`{"path":%q,"appid":%q,"errcode":%d}`, path, s.appid, errcode))
}

// clearFaults is WeChat recovering, or the operator's fix taking effect.
func (s *scn) clearFaults(t *testing.T) {
	s.o.dev.admin(t, http.MethodDelete, wechattest.AdminPrefix+"faults?appid="+s.appid, "")
}

func (s *scn) classicFetch(t *testing.T) int {
	return s.o.dev.wechatCall(t, http.MethodGet, wechattest.PathToken+"?"+url.Values{
		"grant_type": {"client_credential"}, "appid": {s.appid}, "secret": {s.secret}}.Encode(), "")
}

func (s *scn) waitHealthy(t *testing.T) {
	s.o.waitFor(t, s.name, "published and unpaused", 2*time.Minute, healthy)
}

// pausedFault is a row staged by a fault that pauses the app until the
// operator's fix at WeChat's side and `wxtoken apps unblock`.
func pausedFault(label string, errcode int) scenario {
	return scenario{label: label, wantAdd: 5, errcode: errcode, paused: true,
		before: func(t *testing.T, s *scn) { s.fault(t, "", errcode) },
		fix:    func(t *testing.T, s *scn) { s.clearFaults(t) },
		after:  func(t *testing.T, s *scn) { s.waitHealthy(t) }}
}

var (
	beijing = time.FixedZone("CST", 8*3600)
	ridRE   = regexp.MustCompile(`"rid":"[^"]+"`)
)

// nextBeijingMidnight is when WeChat's daily counts next start again.
func nextBeijingMidnight(now time.Time) time.Time {
	b := now.In(beijing)
	return time.Date(b.Year(), b.Month(), b.Day()+1, 0, 0, 0, 0, beijing)
}

// scenarios stage every row of the README's runbook by errcode.
var scenarios = []scenario{
	{label: "-1, HTTP 5xx, timeouts", wantAdd: 5, errcode: -1,
		before: func(t *testing.T, s *scn) { s.fault(t, "", -1) },
		fix:    func(t *testing.T, s *scn) { s.clearFaults(t) },
		after:  func(t *testing.T, s *scn) { s.waitHealthy(t) }},
	{label: "45011", wantAdd: 5, errcode: 45011, anyPause: true,
		before: func(t *testing.T, s *scn) { s.fault(t, wechattest.PathStableToken, 45011) },
		fix:    func(t *testing.T, s *scn) { s.clearFaults(t) },
		after:  func(t *testing.T, s *scn) { s.waitHealthy(t) }},
	{label: "45009", mode: registry.Classic, wantAdd: 5, errcode: 45009, paused: true,
		before: func(t *testing.T, s *scn) {
			// The sandbox's daily counts start again at Beijing midnight:
			// not across it (a wait of at most two minutes, once a day).
			if left := time.Until(nextBeijingMidnight(time.Now())); left < 2*time.Minute {
				time.Sleep(left + time.Second)
			}
			// Someone else spends the account's daily /cgi-bin/token quota.
			for i := 0; ; i++ {
				if i > 5000 {
					t.Fatal("the sandbox's classic quota did not run out in 5000 calls")
				}
				if s.classicFetch(t) == 45009 {
					break
				}
			}
		},
		after: func(t *testing.T, s *scn) {
			if !slices.ContainsFunc(s.outs, func(o string) bool { return strings.Contains(o, "Cleared the daily API call counts") }) {
				t.Errorf("`apps clear-quota` did not clear the quota: %q", s.outs)
			}
			s.waitHealthy(t)
		}},
	{label: "40001 (on the token call), 40125 (WeCom 40091)", wrongSecret: true, wantAdd: 5, errcode: 40125, paused: true,
		after: func(t *testing.T, s *scn) { s.waitHealthy(t) }},
	{label: "40013", wrongAppID: true, wantAdd: 5, errcode: 40013, paused: true,
		after: func(t *testing.T, s *scn) {
			if v, _ := s.o.show(t, s.name); v.AppID != s.appid {
				t.Errorf("appid %s after `apps set --appid`, want %s", v.AppID, s.appid)
			}
			s.waitHealthy(t)
		}},
	{label: "40164, 61004 (WeCom 60020)", allowedIPs: []string{"192.0.2.1"}, wantAdd: 5, errcode: 40164, paused: true,
		fix: func(t *testing.T, s *scn) {
			v, _ := s.o.show(t, s.name)
			if v.Advice == nil || !strings.Contains(v.Advice.Fix, "127.0.0.1") {
				t.Fatalf("apps show does not quote the refused IP 127.0.0.1: %+v", v.Advice)
			}
			// The operator whitelists the quoted IP.
			s.o.dev.admin(t, http.MethodPost, wechattest.AdminPrefix+"apps", fmt.Sprintf(`{"appid":%q,"secret":%q,"allowed_ips":["127.0.0.1"]}`, s.appid, s.secret))
		},
		after: func(t *testing.T, s *scn) { s.waitHealthy(t) }},
	pausedFault("40243", 40243),
	pausedFault("89501, 89503, 89506, 89507", 89503),
	pausedFault("50004", 50004),
	{label: "61024", wantAdd: 5, errcode: 61024, paused: true,
		before: func(t *testing.T, s *scn) { s.fault(t, "", 61024) },
		after: func(t *testing.T, s *scn) {
			if _, ok := s.o.show(t, s.name); ok {
				t.Error("the app is still registered after `apps remove`")
			}
		}},
	{label: "40002, 41001/41002/41004, 43002", wantAdd: 5, errcode: 40002, paused: true,
		before: func(t *testing.T, s *scn) { s.fault(t, "", 40002) },
		after: func(t *testing.T, s *scn) {
			logs, err := os.ReadFile(filepath.Join(s.o.dir, ".cache", "dev", "functions.log"))
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, l := range strings.Split(string(logs), "\n") {
				if strings.Contains(l, `"event":"refresh_failed"`) && strings.Contains(l, `"app":"`+s.name+`"`) &&
					strings.Contains(l, `"errcode":40002`) && ridRE.MatchString(l) {
					found = true
				}
			}
			if !found {
				t.Errorf("functions.log has no refresh_failed line of %s with the errcode and the rid to open an issue with", s.name)
			}
		}},
	{label: "drift", mode: registry.Classic,
		trigger: func(t *testing.T, s *scn) {
			tok, _, code := s.o.wxtoken(t, "", "token", s.name)
			if code != 0 {
				t.Fatalf("wxtoken token: exit %d", code)
			}
			// Another fetcher: two /cgi-bin/token calls end wxtoken's token.
			s.classicFetch(t)
			s.classicFetch(t)
			// A business server reports it.
			resp, err := http.Post(s.o.dev.api+"/v1/apps/"+s.name+"/refresh", "application/json",
				strings.NewReader(fmt.Sprintf(`{"stale_token":%q}`, strings.TrimSpace(tok))))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("refresh with the superseded token: %d", resp.StatusCode)
			}
			v, _ := s.o.show(t, s.name)
			if v.DriftCount < 1 || !strings.Contains(v.DriftAdvice, "wxtoken apps set "+s.name+" --mode stable") {
				t.Fatalf("apps show after drift: count %d, advice %q", v.DriftCount, v.DriftAdvice)
			}
		},
		after: func(t *testing.T, s *scn) {
			if v, _ := s.o.show(t, s.name); v.Mode != string(registry.Stable) {
				t.Errorf("mode %q after `apps set --mode stable`", v.Mode)
			}
		}},
}

// TestRunbook stages every row of the README's runbook by errcode against
// make dev: the sandbox answers the errcode (or the real condition behind
// it), the operator command shows it with the README's advice, the
// operator's fix at WeChat's side is made, then the README's commands run
// as written (with --local added, NAME and wx… filled in, and WeChat's
// host, should a row name it, the sandbox's) and the
// app is healthy again (or removed, as the row says).
func TestRunbook(t *testing.T) {
	tables, err := runbook.Load(readme)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range tables.Runbook {
		if !slices.ContainsFunc(scenarios, func(s scenario) bool { return s.label == row.Label }) {
			t.Errorf("the README's runbook row %q has no scenario in TestRunbook", row.Label)
		}
	}
	o := newOperator(t)
	o.sink = leakscan.Sink(t, "wxtoken-runbook")
	t.Run("rows", func(t *testing.T) {
		for i, sc := range scenarios {
			i, sc := i, sc
			row := slices.IndexFunc(tables.Runbook, func(r runbook.Row) bool { return r.Label == sc.label })
			if row < 0 {
				t.Errorf("scenario %q is no row of the README's runbook", sc.label)
				continue
			}
			t.Run(fmt.Sprintf("row%02d", row), func(t *testing.T) {
				t.Parallel()
				runScenario(t, o, i, sc, tables.Runbook[row])
			})
		}
	})
	// The alarms' first look: the columns the README points at (make dev's
	// demo app keeps the list a table).
	list, _, code := o.wxtoken(t, "", "apps", "list")
	if code != 0 {
		t.Fatalf("wxtoken apps list: exit %d", code)
	}
	header := strings.SplitN(list, "\n", 2)[0]
	columnRE := regexp.MustCompile(`the ([A-Z][A-Z ]*[A-Z]) column`)
	for _, a := range tables.Alarms {
		for _, m := range columnRE.FindAllStringSubmatch(a.FirstLook, -1) {
			if !strings.Contains(header, m[1]) {
				t.Errorf("alarm %s: the README points at the %s column; `wxtoken apps list` has %q", a.Names[0], m[1], header)
			}
		}
	}
}

func runScenario(t *testing.T, o operator, i int, sc scenario, row runbook.Row) {
	s := &scn{o: o.in(t),
		name: fmt.Sprintf("rb-%02d", i), appid: fmt.Sprintf("wx%016x", 0xa1b000+i), secret: fmt.Sprintf("%032x", 0x5ec000+i)}
	leakscan.Record(leakscan.Secret, s.secret)
	t.Cleanup(func() { s.o.wxtoken(t, "", "apps", "remove", s.name) })
	ips := `[]`
	if len(sc.allowedIPs) > 0 {
		ips = `["` + strings.Join(sc.allowedIPs, `","`) + `"]`
	}
	o.dev.admin(t, http.MethodPost, wechattest.AdminPrefix+"apps", fmt.Sprintf(`{"appid":%q,"secret":%q,"kind":"offiaccount","allowed_ips":%s}`, s.appid, s.secret, ips))
	if err := os.WriteFile(filepath.Join(s.o.dir, "secret.txt"), []byte(s.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if sc.before != nil {
		sc.before(t, s)
	}
	secret, appid := s.secret, s.appid
	if sc.wrongSecret {
		secret = fmt.Sprintf("%032x", 0xbad000+i)
		leakscan.Record(leakscan.Secret, secret)
	}
	if sc.wrongAppID {
		appid = fmt.Sprintf("wx%016x", 0xbad000+i)
	}
	args := []string{"apps", "add", s.name, "--appid", appid, "--kind", "offiaccount"}
	if sc.mode != "" {
		args = append(args, "--mode", string(sc.mode))
	}
	out, errOut, code := s.o.wxtoken(t, secret+"\n", args...)
	if code != sc.wantAdd {
		t.Fatalf("apps add: exit %d, want %d\n%s%s", code, sc.wantAdd, out, errOut)
	}
	if sc.errcode != 0 {
		v, _ := s.o.show(t, s.name)
		if v.LastError == nil || v.LastError.Errcode != sc.errcode {
			t.Fatalf("apps show: last error %+v, want errcode %d", v.LastError, sc.errcode)
		}
		if (v.PausedUntil != nil) != sc.paused && !sc.anyPause {
			t.Errorf("apps show: paused until %v, want paused %v", v.PausedUntil, sc.paused)
		}
		if sc.errcode == 45009 && v.PausedUntil != nil {
			if b := v.PausedUntil.In(beijing); b.Hour() != 0 || b.Minute() != 0 {
				t.Errorf("45009 pauses until %v, want Beijing midnight", b)
			}
		}
		if sc.errcode == 45011 && v.PausedUntil != nil && time.Until(*v.PausedUntil) > time.Minute {
			t.Errorf("45011 pauses until %v, want the next minute", v.PausedUntil)
		}
		if v.Advice == nil {
			t.Errorf("apps show gives no advice for errcode %d", sc.errcode)
		} else if got, want := runbook.WxtokenVerbs(runbook.Commands(v.Advice.Fix, "wxtoken "), true), runbook.WxtokenVerbs(row.Commands, true); !slices.Equal(got, want) {
			t.Errorf("apps show prescribes %q, the README %q", got, want)
		}
		list, _, _ := s.o.wxtoken(t, "", "apps", "list")
		if !regexp.MustCompile(`(?m)^` + s.name + `\s.*\s` + regexp.QuoteMeta(fmt.Sprint(sc.errcode)) + `(\s|$)`).MatchString(list) {
			t.Errorf("apps list does not show %s's errcode %d:\n%s", s.name, sc.errcode, list)
		}
	}
	if sc.trigger != nil {
		sc.trigger(t, s)
	}
	if sc.fix != nil {
		sc.fix(t, s)
	}
	for _, c := range row.Commands {
		line := regexp.MustCompile(`\bwxtoken `).ReplaceAllString(c, "wxtoken --local ")
		line = strings.NewReplacer("NAME", s.name, "wx…", s.appid, "https://api.weixin.qq.com", o.dev.sandbox).Replace(line)
		if strings.Contains(line, "…") {
			t.Fatalf("README command %q has a placeholder the test does not know", c)
		}
		out, code := s.o.sh(t, line, "")
		if code != 0 {
			t.Fatalf("README command %q: exit %d\n%s", c, code, out)
		}
		s.outs = append(s.outs, out)
	}
	sc.after(t, s)
}

// TestAlarmsMatchTemplate: the README's alarm table names exactly the
// template's alarms, and every row's first look names a wxtoken command or
// is one of the rows whose first look is a plain fact about AWS.
func TestAlarmsMatchTemplate(t *testing.T) {
	tables, err := runbook.Load(readme)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var inTemplate []string
	for _, m := range regexp.MustCompile(`(?m)^\s+AlarmName: !Sub "?\$\{AWS::StackName\}-([a-z0-9-]+)"?\s*$`).FindAllStringSubmatch(string(raw), -1) {
		inTemplate = append(inTemplate, "<stack>-"+m[1])
	}
	if n := strings.Count(string(raw), "Type: AWS::CloudWatch::Alarm"); n != len(inTemplate) {
		t.Fatalf("the template has %d alarms, %d with an AlarmName this test reads", n, len(inTemplate))
	}
	var inReadme []string
	for _, a := range tables.Alarms {
		inReadme = append(inReadme, a.Names...)
	}
	slices.Sort(inTemplate)
	slices.Sort(inReadme)
	if len(inTemplate) == 0 || !slices.Equal(inTemplate, inReadme) {
		t.Errorf("the README's alarms %q, the template's %q", inReadme, inTemplate)
	}
	// Where the first look is AWS's own (the schedule's rule, the API's
	// log), not an app's.
	plain := map[string]bool{"<stack>-schedule-stopped": true, "<stack>-api-internal-errors": true}
	for _, a := range tables.Alarms {
		if len(a.Commands) == 0 && !plain[a.Names[0]] {
			t.Errorf("alarm %s: the first look names no wxtoken command", a.Names[0])
		}
	}
}
