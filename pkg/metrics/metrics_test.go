package metrics_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/metrics"
	"github.com/wxtoken/wxtoken/pkg/refresh"
)

// doc is one EMF document, checked against the specification: the root holds
// every dimension of every set (as a string) and every metric (as a number).
type doc map[string]any

func parse(t *testing.T, out *bytes.Buffer) []doc {
	t.Helper()
	var docs []doc
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var d doc
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		aws, ok := d["_aws"].(map[string]any)
		if !ok {
			t.Fatalf("no _aws member: %s", sc.Text())
		}
		if ts, ok := aws["Timestamp"].(float64); !ok || ts != float64(int64(ts)) || ts <= 0 {
			t.Errorf("Timestamp %v is not epoch milliseconds", aws["Timestamp"])
		}
		dirs, _ := aws["CloudWatchMetrics"].([]any)
		if len(dirs) != 1 {
			t.Fatalf("want one metric directive: %s", sc.Text())
		}
		dir := dirs[0].(map[string]any)
		if dir["Namespace"] != metrics.Namespace {
			t.Errorf("namespace %v", dir["Namespace"])
		}
		for _, set := range dir["Dimensions"].([]any) {
			keys := set.([]any)
			if len(keys) == 0 || len(keys) > 30 {
				t.Errorf("dimension set %v: want 1 to 30 keys", keys)
			}
			for _, k := range keys {
				if v, ok := d[k.(string)].(string); !ok || v == "" {
					t.Errorf("dimension %v has no string value at the root: %s", k, sc.Text())
				}
			}
		}
		ms := dir["Metrics"].([]any)
		if len(ms) == 0 || len(ms) > 100 {
			t.Errorf("%d metrics in a directive", len(ms))
		}
		for _, m := range ms {
			name := m.(map[string]any)["Name"].(string)
			if _, ok := d[name].(float64); !ok {
				t.Errorf("metric %s has no number at the root: %s", name, sc.Text())
			}
		}
		docs = append(docs, d)
	}
	return docs
}

// values maps metric name -> value over all documents.
func values(docs []doc) map[string]float64 {
	out := map[string]float64{}
	for _, d := range docs {
		for _, m := range d["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)["Metrics"].([]any) {
			name := m.(map[string]any)["Name"].(string)
			out[name] += d[name].(float64)
		}
	}
	return out
}

func TestObserve(t *testing.T) {
	tests := []struct {
		name string
		ev   refresh.Event
		want map[string]float64
	}{
		{"refreshed", refresh.Event{App: "shop", Reason: "scheduled", Outcome: refresh.OutcomeRefreshed, CallsToday: 3},
			map[string]float64{"Refreshes": 1, "CallsToday": 3}},
		{"failed at WeChat", refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeFailed, ErrCode: 40164, CallsToday: 4},
			map[string]float64{"Refreshes": 1, "RefreshFailures": 1, "WeChatErrors": 1, "CallsToday": 4}},
		{"fenced with drift", refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeFenced, Drift: true},
			map[string]float64{"Refreshes": 1, "RefreshFailures": 1, "Drift": 1}},
		{"coalesced", refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeCoalesced},
			map[string]float64{"Refreshes": 1, "LockContention": 1, "CoalescedRequests": 1}},
		{"a plain read", refresh.Event{App: "shop", Reason: "ensure", Outcome: refresh.OutcomeServed},
			map[string]float64{"Refreshes": 1}},
		{"a stale claim answered by the published token", refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeServed},
			map[string]float64{"Refreshes": 1, "CoalescedRequests": 1}},
		{"lock timeout", refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeLockTimeout},
			map[string]float64{"Refreshes": 1, "LockContention": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			e := &metrics.EMF{W: &out, Service: "wxtoken-prod", Now: func() time.Time { return time.UnixMilli(1795248000000) }}
			e.Observe(context.Background(), tt.ev)
			docs := parse(t, &out)
			got := values(docs)
			if len(got) != len(tt.want) {
				t.Errorf("metrics %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
				}
			}
			for _, d := range docs {
				if d["Service"] != "wxtoken-prod" {
					t.Errorf("Service = %v", d["Service"])
				}
				if _, ok := d["WeChatErrors"]; ok && d["ErrCode"] != "40164" {
					t.Errorf("WeChatErrors without its ErrCode dimension: %v", d)
				}
			}
		})
	}
}

// TestAlarmSeries checks that the series the template's alarms read exist
// with the Service dimension alone.
func TestAlarmSeries(t *testing.T) {
	var out bytes.Buffer
	e := &metrics.EMF{W: &out, Service: "s"}
	e.RemainingLife(90*time.Second, map[string]time.Duration{"shop": 90 * time.Second})
	e.NeedingAttention(2)
	e.Observe(context.Background(), refresh.Event{App: "shop", Outcome: refresh.OutcomeFailed, Drift: true})
	serviceOnly := map[string]bool{}
	for _, d := range parse(t, &out) {
		dir := d["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
		for _, set := range dir["Dimensions"].([]any) {
			if keys := set.([]any); len(keys) == 1 && keys[0] == "Service" {
				for _, m := range dir["Metrics"].([]any) {
					serviceOnly[m.(map[string]any)["Name"].(string)] = true
				}
			}
		}
		if v, ok := d["TokenRemainingLife"]; ok && v != 90.0 {
			t.Errorf("TokenRemainingLife = %v, want 90", v)
		}
	}
	for _, name := range []string{"TokenRemainingLife", "AppsNeedingAttention", "RefreshFailures", "Drift"} {
		if !serviceOnly[name] {
			t.Errorf("%s has no series with only the Service dimension (the alarms read it)", name)
		}
	}
}

func TestResponse(t *testing.T) {
	var out bytes.Buffer
	e := &metrics.EMF{W: &out, Service: "s"}
	e.Response("refresh", 200)
	e.Response("status", 500)
	got := values(parse(t, &out))
	if got["ApiResponses"] != 2 || got["ApiInternalErrors"] != 1 {
		t.Errorf("metrics %v, want 2 responses and 1 internal error", got)
	}
}

func TestNilWriterIsQuiet(t *testing.T) {
	var e *metrics.EMF
	e.Put(nil, nil, metrics.Metric{Name: "X", Unit: metrics.Count, Value: 1}) // must not panic
	(&metrics.EMF{}).RemainingLife(time.Second, nil)
}
