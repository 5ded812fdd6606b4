// Package runbook reads the README's operations tables — the alarms and the
// runbook by errcode — so that tests can hold the code to what they tell an
// operator: the advice the operator command prints, and each prescribed
// step, run as written against make dev.
package runbook

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Row is one row of the runbook by errcode.
type Row struct {
	// Label is the first cell as written ("40164, 61004 (WeCom 60020)").
	Label string
	// Errcodes are the errcodes the label names (none for "drift").
	Errcodes []int
	// Meaning, Wxtoken and You are the other cells: what the errcode
	// means, what wxtoken does and what the operator does.
	Meaning, Wxtoken, You string
	// Commands are the shell commands in the You cell (the code spans
	// that start with "wxtoken " or "curl "), in order.
	Commands []string
}

// Alarm is one row of the alarms table.
type Alarm struct {
	// Names are the alarm names in the first cell, with "<stack>-" as
	// written.
	Names []string
	// FiresWhen and FirstLook are the other cells.
	FiresWhen, FirstLook string
	// Commands are the wxtoken commands in the FirstLook cell.
	Commands []string
}

// Tables are the README's operations tables.
type Tables struct {
	Alarms  []Alarm
	Runbook []Row
}

// Headers of the two tables, as the README writes them.
const (
	alarmHeader   = "| alarm | fires when | first look |"
	runbookHeader = "| errcode | meaning | wxtoken | you |"
)

var (
	codeSpanRE = regexp.MustCompile("`([^`]+)`")
	errcodeRE  = regexp.MustCompile(`(?:^|[\s,/(])(-?\d+)(?:$|[\s,/)])`)
)

// Load reads the tables from the README at path.
func Load(path string) (Tables, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Tables{}, fmt.Errorf("runbook: %w", err)
	}
	return Parse(string(raw))
}

// Parse reads the tables from a README's text.
func Parse(text string) (Tables, error) {
	var t Tables
	alarms, err := table(text, alarmHeader, 3)
	if err != nil {
		return Tables{}, err
	}
	for _, c := range alarms {
		a := Alarm{Names: codeSpans(c[0]), FiresWhen: c[1], FirstLook: c[2], Commands: Commands(c[2], "wxtoken ")}
		if len(a.Names) == 0 {
			return Tables{}, fmt.Errorf("runbook: alarm row %q names no alarm in a code span", c[0])
		}
		t.Alarms = append(t.Alarms, a)
	}
	rows, err := table(text, runbookHeader, 4)
	if err != nil {
		return Tables{}, err
	}
	for _, c := range rows {
		r := Row{Label: c[0], Meaning: c[1], Wxtoken: c[2], You: c[3], Commands: Commands(c[3], "wxtoken ", "curl ")}
		for _, m := range errcodeRE.FindAllStringSubmatch(strings.ReplaceAll(c[0], "/", " / "), -1) {
			n, _ := strconv.Atoi(m[1])
			r.Errcodes = append(r.Errcodes, n)
		}
		t.Runbook = append(t.Runbook, r)
	}
	return t, nil
}

// table returns the cells of the rows of the table whose header line is
// header, each with want cells.
func table(text, header string, want int) ([][]string, error) {
	i := strings.Index(text, header)
	if i < 0 {
		return nil, fmt.Errorf("runbook: no table with the header %q", header)
	}
	lines := strings.Split(text[i:], "\n")
	var rows [][]string
	for _, line := range lines[2:] { // the header and the separator
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := splitRow(line)
		if len(cells) != want {
			return nil, fmt.Errorf("runbook: row %q has %d cells, want %d", line, len(cells), want)
		}
		rows = append(rows, cells)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("runbook: the table %q has no rows", header)
	}
	return rows, nil
}

// splitRow splits a Markdown table row into trimmed cells; a "|" inside a
// code span does not split.
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	var cur strings.Builder
	inCode := false
	for _, r := range line {
		switch {
		case r == '`':
			inCode = !inCode
			cur.WriteRune(r)
		case r == '|' && !inCode:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

func codeSpans(cell string) []string {
	var out []string
	for _, m := range codeSpanRE.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// Commands returns the code spans of cell (a table cell, or any Markdown
// text) that start with one of prefixes.
func Commands(cell string, prefixes ...string) []string {
	var out []string
	for _, span := range codeSpans(cell) {
		for _, p := range prefixes {
			if strings.HasPrefix(span, p) {
				out = append(out, span)
				break
			}
		}
	}
	return out
}

// Find returns the row that names errcode (false if none does).
func (t Tables) Find(errcode int) (Row, bool) {
	for _, r := range t.Runbook {
		for _, c := range r.Errcodes {
			if c == errcode {
				return r, true
			}
		}
	}
	return Row{}, false
}

// WxtokenVerbs returns the wxtoken subcommands ("apps unblock", "apps
// secret") that the commands run, without their arguments, sorted by first
// appearance and without duplicates; informational ones ("apps show",
// "apps list") are left out when actionOnly is set.
func WxtokenVerbs(commands []string, actionOnly bool) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range commands {
		f := strings.Fields(c)
		if len(f) < 2 || f[0] != "wxtoken" {
			continue
		}
		verb := f[1]
		if f[1] == "apps" && len(f) > 2 {
			verb = f[1] + " " + f[2]
		}
		if actionOnly && (verb == "apps show" || verb == "apps list") {
			continue
		}
		if !seen[verb] {
			seen[verb] = true
			out = append(out, verb)
		}
	}
	return out
}
