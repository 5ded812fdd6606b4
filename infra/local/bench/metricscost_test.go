package bench_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/metrics"
	"github.com/wxtoken/wxtoken/pkg/metrics/metricstest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
)

// CloudWatch prices (list prices, us-east-1; not in
// /work/shared/reference/aws.md, taken from the CloudWatch pricing page,
// https://aws.amazon.com/cloudwatch/pricing/, as issue 13 quotes them).
const (
	// priceMetricMonth: a custom metric (each distinct namespace, name,
	// dimension set and values) for the first 10,000 metrics, prorated by
	// the hour: a series is billed for every hour in which it receives
	// data. EMF documents themselves cost only their log ingestion (counted
	// in the log bytes); there is no PutMetricData call.
	priceMetricMonth = 0.30
	// priceAlarmMonth: a standard-resolution alarm on one metric.
	priceAlarmMonth = 0.10
	daysPerMonth    = hoursPerMonth / 24
	// onDemandPerHour: API refreshes of the simulated day (service-level
	// series only, so their number does not change the per-app figure).
	onDemandPerHour = 6
)

// templatePath is the SAM template, for its count of alarms.
const templatePath = "../../../template.yaml"

// ruleSet names a set of metric rules.
type ruleSet string

const (
	rulesNow    ruleSet = "now"    // pkg/metrics as it is
	rulesBefore ruleSet = "before" // the per-app series of the earlier pkg/metrics (legacyEMF)
)

// metricsDay is what a simulated day of one stack costs in CloudWatch
// custom metrics under one rule set.
type metricsDay struct {
	rules       ruleSet
	apps        int // all apps: healthy, one failing, one drifting
	series      int // distinct series
	perAppSets  int // distinct series with the App dimension
	seriesHours int // billed metric-hours in the day
	emfBytes    int64
	stats       metricstest.DayStats
	meter       *metricstest.Meter
}

// monthly is the metrics' cost a month: the day's metric-hours every day.
func (d metricsDay) monthly() float64 {
	return float64(d.seriesHours) * daysPerMonth * priceMetricMonth / hoursPerMonth
}

// perApp is monthly shared by the apps.
func (d metricsDay) perApp() float64 { return d.monthly() / float64(d.apps) }

// simulateMetricsDay runs a simulated day of n apps (n-2 healthy, a third of
// them with a jsapi ticket, one whose WeChat calls all fail, one whose every
// refresh finds drift) through the
// real schedule handler into the given rules and meters the EMF documents
// written.
func simulateMetricsDay(tb testing.TB, n int, rules ruleSet) metricsDay {
	tb.Helper()
	m := &metricstest.Meter{}
	d := &metricstest.Day{Healthy: n - 2, Failing: 1, Drifting: 1, Tickets: (n - 2) / 3, OnDemandPerHour: onDemandPerHour}
	emf := &metrics.EMF{W: m, Service: "wxtoken", Now: d.Now}
	var sink metricstest.Sink = emf
	if rules == rulesBefore {
		sink = legacyEMF{emf}
	}
	stats, err := d.Run(context.Background(), sink)
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Err(); err != nil {
		tb.Fatal(err)
	}
	out := metricsDay{rules: rules, apps: n, seriesHours: m.SeriesHours(), stats: stats, meter: m}
	for _, s := range m.Series() {
		out.series++
		if s.Has(metrics.DimApp) {
			out.perAppSets++
		}
	}
	_, out.emfBytes = m.Docs()
	return out
}

// checkRealSeries fails when the scale runs' real documents (the scheduled
// function's handler over DynamoDB Local, moto and the sandbox) hold a
// series the simulated day did not produce: the day must write what the
// function writes.
func checkRealSeries(tb testing.TB, real *metricstest.Meter, day metricsDay) {
	tb.Helper()
	if err := real.Err(); err != nil {
		tb.Fatal(err)
	}
	simulated := map[metricstest.Series]bool{}
	for _, s := range day.meter.Series() {
		simulated[s] = true
	}
	got := real.Series()
	if len(got) == 0 {
		tb.Errorf("the scale runs wrote no EMF document")
	}
	for _, s := range got {
		if !simulated[s] {
			tb.Errorf("the scale runs wrote %v, which the simulated day of %d apps did not: the simulation misses a case", s, day.apps)
		}
	}
}

// templateAlarms counts the CloudWatch alarms of the SAM template.
func templateAlarms(tb testing.TB) int {
	tb.Helper()
	raw, err := os.ReadFile(templatePath)
	if err != nil {
		tb.Fatalf("read the template for its alarms: %v", err)
	}
	n := strings.Count(string(raw), "Type: AWS::CloudWatch::Alarm")
	if n == 0 {
		tb.Fatalf("%s has no AWS::CloudWatch::Alarm", templatePath)
	}
	return n
}

// legacyEMF writes the series of pkg/metrics before issue 13 §4 (a copy
// of its rules), to price the same simulated day under them: Refreshes per
// App and Outcome, CallsToday and the other counts per App, WeChatErrors
// per App and ErrCode, and TokenRemainingLife per App for every app within
// the schedule's NearExpiry (10 minutes).
type legacyEMF struct{ e *metrics.EMF }

var (
	legacyByApp     = [][]string{{}, {"App"}}
	legacyByOutcome = [][]string{{"Outcome"}, {"App", "Outcome"}, {"Reason"}}
	legacyByErrCode = [][]string{{"ErrCode"}, {"App", "ErrCode"}}
	legacyAppOnly   = [][]string{{"App"}}
)

// Observe is the earlier metrics.EMF.Observe.
func (l legacyEMF) Observe(_ context.Context, ev refresh.Event) {
	e := l.e
	e.Put(legacyByOutcome, map[string]string{"App": ev.App, "Outcome": string(ev.Outcome), "Reason": ev.Reason},
		metrics.Metric{Name: "Refreshes", Unit: metrics.Count, Value: 1})
	var ms []metrics.Metric
	if ev.Failure() {
		ms = append(ms, metrics.Metric{Name: "RefreshFailures", Unit: metrics.Count, Value: 1})
	}
	if ev.Drift {
		ms = append(ms, metrics.Metric{Name: "Drift", Unit: metrics.Count, Value: 1})
	}
	if ev.Waited() {
		ms = append(ms, metrics.Metric{Name: "LockContention", Unit: metrics.Count, Value: 1})
	}
	if ev.Outcome == refresh.OutcomeCoalesced || ev.Outcome == refresh.OutcomeServed && ev.Reason == "on_demand" {
		ms = append(ms, metrics.Metric{Name: "CoalescedRequests", Unit: metrics.Count, Value: 1})
	}
	e.Put(legacyByApp, map[string]string{"App": ev.App}, ms...)
	if ev.ErrCode != 0 && ev.Outcome == refresh.OutcomeFailed {
		e.Put(legacyByErrCode, map[string]string{"App": ev.App, "ErrCode": strconv.Itoa(ev.ErrCode)},
			metrics.Metric{Name: "WeChatErrors", Unit: metrics.Count, Value: 1})
	}
	if ev.CallsToday > 0 {
		e.Put(legacyAppOnly, map[string]string{"App": ev.App}, metrics.Metric{Name: "CallsToday", Unit: metrics.Count, Value: float64(ev.CallsToday)})
	}
}

// RemainingLife is the earlier metrics.EMF.RemainingLife.
func (l legacyEMF) RemainingLife(shortest time.Duration, low map[string]time.Duration) {
	l.e.Put([][]string{{}}, nil, metrics.Metric{Name: "TokenRemainingLife", Unit: metrics.Seconds, Value: shortest.Seconds()})
	for app, left := range low {
		l.e.Put(legacyAppOnly, map[string]string{"App": app}, metrics.Metric{Name: "TokenRemainingLife", Unit: metrics.Seconds, Value: left.Seconds()})
	}
}

// NeedingAttention is unchanged.
func (l legacyEMF) NeedingAttention(n int) { l.e.NeedingAttention(n) }

// Response is unchanged.
func (l legacyEMF) Response(kind string, status int) { l.e.Response(kind, status) }

// TestMetricsDaySmoke: the simulated day covers what the scale runs write,
// and the per-app figure falls with the number of apps now while it stayed
// flat before.
func TestMetricsDaySmoke(t *testing.T) {
	r := scale(t, 5)
	now5 := simulateMetricsDay(t, 5, rulesNow)
	checkRealSeries(t, r.emf, now5)
	now100, before100 := simulateMetricsDay(t, 100, rulesNow), simulateMetricsDay(t, 100, rulesBefore)
	if now100.series != now5.series {
		t.Errorf("now: %d series with 5 apps, %d with 100; want the same", now5.series, now100.series)
	}
	if now100.perAppSets != now5.perAppSets {
		t.Errorf("now: %d per-app series with 100 apps, %d with 5; want only the failing and the drifting app's", now100.perAppSets, now5.perAppSets)
	}
	if before100.perApp() < 10*now100.perApp() {
		t.Errorf("metrics per app at 100 apps: before $%.4f, now $%.4f; want a tenth or less", before100.perApp(), now100.perApp())
	}
	if n := templateAlarms(t); n < 6 {
		t.Errorf("%d alarms in the template; the alarms this package knows are 6 or more", n)
	}
	t.Logf("metrics at 100 apps: before %d series, $%.4f per app a month; now %d series, $%.4f per app a month",
		before100.series, before100.perApp(), now100.series, now100.perApp())
}
