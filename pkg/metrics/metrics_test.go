package metrics_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/metrics"
	"github.com/wxtoken/wxtoken/pkg/metrics/metricstest"
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

// seriesOf writes with write into a fresh EMF and returns the series it
// produced as "Name{dimension set}" (values left out), sorted.
func seriesOf(t *testing.T, write func(e *metrics.EMF)) []string {
	t.Helper()
	var m metricstest.Meter
	write(&metrics.EMF{W: &m, Service: "s"})
	if err := m.Err(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range m.Series() {
		if s.Namespace != metrics.Namespace {
			t.Errorf("series %v in namespace %q", s, s.Namespace)
		}
		if k := s.Name + "{" + s.Set() + "}"; !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// TestSeriesPerEvent is the table of which series each kind of event
// produces: per-app series only for an app a person must act on.
func TestSeriesPerEvent(t *testing.T) {
	refreshes := []string{"Refreshes{Credential,Service}", "Refreshes{Outcome,Service}", "Refreshes{Reason,Service}"}
	with := func(extra ...string) []string { return append(append([]string(nil), refreshes...), extra...) }
	observe := func(ev refresh.Event) func(*metrics.EMF) {
		return func(e *metrics.EMF) { e.Observe(context.Background(), ev) }
	}
	tests := []struct {
		name  string
		write func(*metrics.EMF)
		want  []string
	}{
		{"scheduled refresh", observe(refresh.Event{App: "shop", Reason: "scheduled", Outcome: refresh.OutcomeRefreshed, CallsToday: 3}),
			with("CallsToday{Service}")},
		{"unchanged", observe(refresh.Event{App: "shop", Reason: "scheduled", Outcome: refresh.OutcomeUnchanged, CallsToday: 4}),
			with("CallsToday{Service}")},
		{"a plain read", observe(refresh.Event{App: "shop", Reason: "ensure", Outcome: refresh.OutcomeServed}),
			refreshes},
		{"a stale claim answered by the published token", observe(refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeServed}),
			with("CoalescedRequests{Service}")},
		{"coalesced", observe(refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeCoalesced}),
			with("CoalescedRequests{Service}", "LockContention{Service}")},
		{"lock timeout", observe(refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeLockTimeout}),
			with("LockContention{Service}")},
		{"claim rejected", observe(refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeClaimRejected}),
			refreshes},
		{"failed at WeChat: the app needs a person", observe(refresh.Event{App: "shop", Reason: "scheduled", Outcome: refresh.OutcomeFailed, Class: refresh.ClassConfig, ErrCode: 40164, CallsToday: 4}),
			with("CallsToday{Service}", "RefreshFailures{App,Service}", "RefreshFailures{Service}", "WeChatErrors{ErrCode,Service}")},
		{"publish failed", observe(refresh.Event{App: "shop", Reason: "scheduled", Outcome: refresh.OutcomePublishFailed, Class: refresh.ClassUnavailable}),
			with("RefreshFailures{App,Service}", "RefreshFailures{Service}")},
		{"fenced with drift", observe(refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeFenced, Drift: true}),
			with("Drift{App,Service}", "Drift{Service}", "RefreshFailures{App,Service}", "RefreshFailures{Service}")},
		{"refreshed with drift", observe(refresh.Event{App: "shop", Reason: "scheduled", Outcome: refresh.OutcomeRefreshed, Drift: true, CallsToday: 2}),
			with("CallsToday{Service}", "Drift{App,Service}", "Drift{Service}")},
		{"refused: paused after a configuration error", observe(refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeRefused, Class: refresh.ClassConfig, ErrCode: 40164}),
			with("PausedRefusals{App,Service}", "PausedRefusals{Service}")},
		{"refused: paused after the daily quota", observe(refresh.Event{App: "shop", Reason: "force", Outcome: refresh.OutcomeRefused, Class: refresh.ClassDailyQuota, ErrCode: 45009}),
			with("PausedRefusals{App,Service}", "PausedRefusals{Service}")},
		{"refused: the minute quota's pause ends by itself", observe(refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeRefused, Class: refresh.ClassMinuteQuota, ErrCode: 45011}),
			refreshes},
		{"refused: min interval", observe(refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeRefused}),
			refreshes},
		{"a ticket failed at WeChat: the same series as a token's", observe(refresh.Event{App: "shop#jsapi", Reason: "scheduled", Outcome: refresh.OutcomeFailed, Class: refresh.ClassConfig, ErrCode: 40164, CallsToday: 4}),
			with("CallsToday{Service}", "RefreshFailures{App,Service}", "RefreshFailures{Service}", "WeChatErrors{ErrCode,Service}")},
		{"wait failed", observe(refresh.Event{App: "shop", Reason: "on_demand", Outcome: refresh.OutcomeWaitFailed, ErrCode: 40164, Class: refresh.ClassConfig}),
			with("LockContention{Service}")},
		{"remaining life, every app healthy", func(e *metrics.EMF) {
			e.RemainingLife(9*time.Minute, map[string]time.Duration{"stable-app": 9 * time.Minute, "due-now": metrics.AppLifeFloor})
		}, []string{"TokenRemainingLife{Service}"}},
		{"remaining life, an app past its refresh", func(e *metrics.EMF) {
			e.RemainingLife(-time.Minute, map[string]time.Duration{"late": metrics.AppLifeFloor - time.Second, "expired": -time.Minute})
		}, []string{"TokenRemainingLife{App,Service}", "TokenRemainingLife{Service}"}},
		{"apps needing attention", func(e *metrics.EMF) { e.NeedingAttention(3) }, []string{"AppsNeedingAttention{Service}"}},
		{"API 200", func(e *metrics.EMF) { e.Response("refresh", 200) }, []string{"ApiResponses{Service,StatusClass}"}},
		{"API 500", func(e *metrics.EMF) { e.Response("status", 500) }, []string{"ApiInternalErrors{Service}", "ApiResponses{Service,StatusClass}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := append([]string(nil), tt.want...)
			sort.Strings(want)
			if got := seriesOf(t, tt.write); !reflect.DeepEqual(got, want) {
				t.Errorf("series\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestRemainingLifePerApp: only the apps below AppLifeFloor get a series of
// their own, with their value.
func TestRemainingLifePerApp(t *testing.T) {
	var m metricstest.Meter
	e := &metrics.EMF{W: &m, Service: "s"}
	e.RemainingLife(-time.Minute, map[string]time.Duration{"healthy": 5 * time.Minute, "late": 200 * time.Second, "expired": -time.Minute})
	var apps []string
	for _, s := range m.Series() {
		if s.Has("App") {
			apps = append(apps, s.Dimensions)
		}
	}
	want := []string{"App=expired,Service=s", "App=late,Service=s"}
	if !reflect.DeepEqual(apps, want) {
		t.Errorf("per-app series %v, want %v", apps, want)
	}
}

// TestHeartbeat: a scheduled run's AppsNeedingAttention is exactly one
// document with the Service dimension alone (the schedule-stopped alarm
// counts its samples).
func TestHeartbeat(t *testing.T) {
	for _, n := range []int{0, 1, 7} {
		var out bytes.Buffer
		(&metrics.EMF{W: &out, Service: "s"}).NeedingAttention(n)
		docs := parse(t, &out)
		if len(docs) != 1 {
			t.Fatalf("NeedingAttention(%d) wrote %d documents, want 1", n, len(docs))
		}
		dir := docs[0]["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
		if sets, _ := json.Marshal(dir["Dimensions"]); string(sets) != `[["Service"]]` || docs[0]["AppsNeedingAttention"] != float64(n) {
			t.Errorf("NeedingAttention(%d): dimensions %s, value %v", n, sets, docs[0]["AppsNeedingAttention"])
		}
	}
}

// daySeries runs a simulated day of healthy apps (half of them with a
// jsapi ticket) plus one failing and one drifting app and returns its meter.
func daySeries(t *testing.T, healthy int) (*metricstest.Meter, metricstest.DayStats) {
	t.Helper()
	m := &metricstest.Meter{}
	d := &metricstest.Day{Healthy: healthy, Failing: 1, Drifting: 1, Tickets: healthy / 2, OnDemandPerHour: 6}
	stats, err := d.Run(context.Background(), &metrics.EMF{W: m, Service: "wxtoken", Now: d.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); err != nil {
		t.Fatal(err)
	}
	return m, stats
}

// TestDaySeriesDoNotGrowWithApps: a day of 10 healthy apps and a day of
// 1,000 produce the same series, their tickets included; the only per-app
// series are those of the failing and the drifting app.
func TestDaySeriesDoNotGrowWithApps(t *testing.T) {
	if testing.Short() {
		t.Skip("a simulated day of 1,000 apps")
	}
	small, smallStats := daySeries(t, 10)
	large, largeStats := daySeries(t, 1000)
	// Each credential (1,001 tokens, 500 tickets) is refreshed about 13
	// times a day (classic 14.4, stable 12.5); the day must really have run.
	if per := float64(largeStats.Refreshes) / 1501; per < 12 || per > 15 {
		t.Errorf("%.1f refreshes per app in the day, want about 13 (%+v)", per, largeStats)
	}
	if smallStats.Runs != 1440 || largeStats.Failures < 1000 || largeStats.Drifts < 12 {
		t.Errorf("the day did not stage its cases: %+v", largeStats)
	}
	names := func(m *metricstest.Meter) (all []string, perApp map[string]bool) {
		perApp = map[string]bool{}
		for _, s := range m.Series() {
			all = append(all, s.String())
			if s.Has("App") {
				perApp[s.Dimensions] = true
			}
		}
		return all, perApp
	}
	smallAll, smallApps := names(small)
	largeAll, largeApps := names(large)
	if !reflect.DeepEqual(smallAll, largeAll) {
		t.Errorf("10 apps: %d series, 1,000 apps: %d series; want the same\n 10: %v\n1000: %v", len(smallAll), len(largeAll), smallAll, largeAll)
	}
	wantApps := map[string]bool{"App=failing-0,Service=wxtoken": true, "App=drifting-0,Service=wxtoken": true}
	if !reflect.DeepEqual(largeApps, wantApps) || !reflect.DeepEqual(smallApps, wantApps) {
		t.Errorf("per-app series for %d apps (10 healthy) and %d apps (1,000 healthy), e.g. %v; want only the failing and the drifting app",
			len(smallApps), len(largeApps), firstKeys(largeApps, 5))
	}
	if a, b := small.SeriesHours(), large.SeriesHours(); a != b {
		t.Errorf("billed metric-hours: %d with 10 apps, %d with 1,000; want the same", a, b)
	}
	t.Logf("a day of 1,000 healthy apps + 1 failing + 1 drifting: %d series, %d metric-hours:\n%s",
		len(largeAll), large.SeriesHours(), strings.Join(largeAll, "\n"))
}

// firstKeys returns up to n keys of m, sorted.
func firstKeys(m map[string]bool, n int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[:min(n, len(keys))]
}

// TestCredentialDimension: Refreshes by Credential tells the token's events
// from each ticket's, and a ticket's per-app series names its credential
// key, so that a person sees which credential needs them.
func TestCredentialDimension(t *testing.T) {
	tests := []struct {
		app      string
		want     string
		wantApps []string
	}{
		{"shop", "Credential=token,Service=s", []string{"App=shop,Service=s"}},
		{"shop#jsapi", "Credential=jsapi,Service=s", []string{"App=shop#jsapi,Service=s"}},
		{"office#agent_config", "Credential=agent_config,Service=s", []string{"App=office#agent_config,Service=s"}},
	}
	for _, tt := range tests {
		var m metricstest.Meter
		e := &metrics.EMF{W: &m, Service: "s"}
		e.Observe(context.Background(), refresh.Event{App: tt.app, Reason: "scheduled", Outcome: refresh.OutcomeFailed, ErrCode: -1})
		var creds, apps []string
		for _, s := range m.Series() {
			switch {
			case s.Has(metrics.DimCredential):
				creds = append(creds, s.Dimensions)
			case s.Has(metrics.DimApp):
				apps = append(apps, s.Dimensions)
			}
		}
		if !reflect.DeepEqual(creds, []string{tt.want}) || !reflect.DeepEqual(apps, tt.wantApps) {
			t.Errorf("%s: Credential series %v, per-app series %v; want [%s] and %v", tt.app, creds, apps, tt.want, tt.wantApps)
		}
	}
}
