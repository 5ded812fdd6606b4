package runbook

import (
	"reflect"
	"testing"
)

const sample = "intro\n\n" + alarmHeader + `
| --- | --- | --- |
| ` + "`<stack>-a`, `<stack>-b`" + ` | x | ` + "`wxtoken apps list`" + ` |

` + runbookHeader + `
| --- | --- | --- | --- |
| -1, HTTP 5xx, timeouts | busy | retries | nothing |
| 40164, 61004 (WeCom 60020) | ip | pauses | ` + "`wxtoken apps show NAME`, `curl -X POST \"https://x?a=1|2\"`, then `wxtoken apps unblock NAME`" + ` |
| 40002, 41001/41002/41004, 43002 | bug | pauses | issue |
| drift | d | r | ` + "`wxtoken apps set NAME --mode stable`" + ` |

after
`

func TestParse(t *testing.T) {
	tb, err := Parse(sample)
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.Alarms[0].Names; !reflect.DeepEqual(got, []string{"<stack>-a", "<stack>-b"}) {
		t.Errorf("alarm names %q", got)
	}
	if got := tb.Alarms[0].Commands; !reflect.DeepEqual(got, []string{"wxtoken apps list"}) {
		t.Errorf("alarm commands %q", got)
	}
	tests := []struct {
		row      int
		errcodes []int
		commands []string
	}{
		{0, []int{-1}, nil},
		{1, []int{40164, 61004, 60020}, []string{"wxtoken apps show NAME", `curl -X POST "https://x?a=1|2"`, "wxtoken apps unblock NAME"}},
		{2, []int{40002, 41001, 41002, 41004, 43002}, nil},
		{3, nil, []string{"wxtoken apps set NAME --mode stable"}},
	}
	if len(tb.Runbook) != len(tests) {
		t.Fatalf("%d rows, want %d", len(tb.Runbook), len(tests))
	}
	for _, tt := range tests {
		r := tb.Runbook[tt.row]
		if !reflect.DeepEqual(r.Errcodes, tt.errcodes) || !reflect.DeepEqual(r.Commands, tt.commands) {
			t.Errorf("row %q: errcodes %v commands %q, want %v %q", r.Label, r.Errcodes, r.Commands, tt.errcodes, tt.commands)
		}
	}
	if got := WxtokenVerbs(tb.Runbook[1].Commands, true); !reflect.DeepEqual(got, []string{"apps unblock"}) {
		t.Errorf("action verbs %q", got)
	}
	if r, ok := tb.Find(60020); !ok || r.Label != "40164, 61004 (WeCom 60020)" {
		t.Errorf("Find(60020) = %q, %v", r.Label, ok)
	}
	if _, err := Parse("no tables"); err == nil {
		t.Error("a text without the tables parsed")
	}
}
