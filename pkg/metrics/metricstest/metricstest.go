// Package metricstest measures what CloudWatch bills for the metrics that
// pkg/metrics writes: Meter reads the Embedded Metric Format documents a
// function writes (among its log lines) and counts the distinct series and
// the hours in which each receives data; Day drives a simulated day of
// scheduled runs, refreshes and API answers through the real schedule
// handler into any Sink (metrics.EMF, or another rule set to compare).
package metricstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/schedule"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// Series is one CloudWatch custom metric: a metric name with its
// dimensions and their values.
type Series struct {
	Namespace string
	Name      string
	// Dimensions are "key=value" pairs, sorted by key, joined by ",".
	Dimensions string
}

// Set returns the series' dimension names, sorted and joined by ",": its
// dimension set without the values.
func (s Series) Set() string {
	var keys []string
	for _, kv := range strings.Split(s.Dimensions, ",") {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	return strings.Join(keys, ",")
}

// Has reports whether the series has the dimension key.
func (s Series) Has(key string) bool {
	for _, kv := range strings.Split(s.Dimensions, ",") {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

// String is "Name{k=v,...}".
func (s Series) String() string { return s.Name + "{" + s.Dimensions + "}" }

// Meter is an io.Writer that reads the lines written to it, keeps the EMF
// documents (lines with an _aws member) and ignores the rest (log lines).
// It is safe for concurrent use; every Write must hold whole lines, as
// metrics.EMF's and slog's do.
type Meter struct {
	mu    sync.Mutex
	hours map[Series]map[int64]bool
	docs  int
	bytes int64
	err   error
}

// emfDoc is the part of an EMF document the meter reads.
type emfDoc struct {
	AWS struct {
		Timestamp         int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  string     `json:"Namespace"`
			Dimensions [][]string `json:"Dimensions"`
			Metrics    []struct {
				Name string `json:"Name"`
			} `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	} `json:"_aws"`
}

// Write implements io.Writer.
func (m *Meter) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, line := range bytes.Split(p, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 || !bytes.Contains(line, []byte(`"_aws"`)) {
			continue
		}
		if err := m.read(line); err != nil && m.err == nil {
			m.err = err
		}
	}
	return len(p), nil
}

// read records one EMF document: every metric under every dimension set is
// a series, active in the UTC hour of the document's timestamp.
func (m *Meter) read(line []byte) error {
	var d emfDoc
	if err := json.Unmarshal(line, &d); err != nil {
		return fmt.Errorf("metricstest: an EMF line is not JSON: %w", err)
	}
	var root map[string]any
	if err := json.Unmarshal(line, &root); err != nil {
		return fmt.Errorf("metricstest: an EMF line is not a JSON object: %w", err)
	}
	if d.AWS.Timestamp <= 0 || len(d.AWS.CloudWatchMetrics) == 0 {
		return fmt.Errorf("metricstest: an EMF document without Timestamp or CloudWatchMetrics: %s", line)
	}
	if m.hours == nil {
		m.hours = map[Series]map[int64]bool{}
	}
	m.docs++
	m.bytes += int64(len(line)) + 1
	hour := d.AWS.Timestamp / int64(time.Hour/time.Millisecond)
	for _, dir := range d.AWS.CloudWatchMetrics {
		for _, set := range dir.Dimensions {
			keys := append([]string(nil), set...)
			sort.Strings(keys)
			pairs := make([]string, 0, len(keys))
			for _, k := range keys {
				v, ok := root[k].(string)
				if !ok || v == "" {
					return fmt.Errorf("metricstest: dimension %s has no string value: %s", k, line)
				}
				pairs = append(pairs, k+"="+v)
			}
			for _, metric := range dir.Metrics {
				s := Series{Namespace: dir.Namespace, Name: metric.Name, Dimensions: strings.Join(pairs, ",")}
				if m.hours[s] == nil {
					m.hours[s] = map[int64]bool{}
				}
				m.hours[s][hour] = true
			}
		}
	}
	return nil
}

// Err returns the first malformed document seen, if any.
func (m *Meter) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Series returns the distinct series seen, sorted.
func (m *Meter) Series() []Series {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Series, 0, len(m.hours))
	for s := range m.hours {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Hours returns the number of distinct hours in which s received data.
func (m *Meter) Hours(s Series) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.hours[s])
}

// SeriesHours returns the billed metric-hours: for every series, the number
// of hours in which it received data.
func (m *Meter) SeriesHours() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, h := range m.hours {
		n += len(h)
	}
	return n
}

// Docs returns the number of EMF documents and their bytes (with newlines).
func (m *Meter) Docs() (docs int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.docs, m.bytes
}

// Sink is what the simulated day writes to: the refresher's events, the
// schedule's metrics and the API's answers. metrics.EMF implements it.
type Sink interface {
	Observe(ctx context.Context, ev refresh.Event)
	RemainingLife(shortest time.Duration, low map[string]time.Duration)
	NeedingAttention(n int)
	Response(kind string, status int)
}

// Token life and refresh points of the simulated apps, as the refresher's
// defaults set them.
const (
	tokenLife     = 7200 * time.Second
	stablePoint   = refresh.DefaultStableWindow - refresh.DefaultStableSlack
	classicPoint  = registry.DefaultRefreshMargin
	wechatSysBusy = -1
)

// Day is a simulated day of one stack: a scheduled run every minute over
// Healthy apps (a third classic, refreshed 20 minutes before expiry, the
// rest stable, refreshed 270 s before), Failing apps (every WeChat call
// fails with errcode -1 from the start, so their tokens run out), Drifting
// apps (classic; every refresh finds the token rotated behind wxtoken's
// back), and OnDemandPerHour API refresh requests an hour answered with the
// published token. Tickets of the healthy apps (the first Tickets of them
// keep a jsapi ticket) are credentials of their own, refreshed like a
// classic token and reported under their key, app#jsapi, as the refresher
// does. Tokens start at staggered points of their life, so refreshes spread
// over the day as they do in a running stack.
type Day struct {
	Healthy, Failing, Drifting int
	Tickets                    int
	OnDemandPerHour            int
	// Start is the first run (zero: 2026-11-21 00:00 UTC); Runs the number
	// of runs a minute apart (zero: 1,440, a day).
	Start time.Time
	Runs  int

	now time.Time
}

// Now is the simulated clock; set it as the Sink's clock (metrics.EMF.Now)
// so that documents carry the simulated time.
func (d *Day) Now() time.Time {
	if d.now.IsZero() {
		return d.start()
	}
	return d.now
}

func (d *Day) start() time.Time {
	if d.Start.IsZero() {
		return time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	}
	return d.Start
}

// DayStats is what the simulated day did.
type DayStats struct {
	Runs, Refreshes, Failures, Drifts, Requests int
}

// simApp is one app of the simulation.
type simApp struct {
	name    string
	point   time.Duration // refreshed when less than this is left
	expires time.Time
	failing bool
	drift   bool
	calls   int
}

// apps builds the simulated apps, tokens staggered over their lives.
func (d *Day) apps() []*simApp {
	var out []*simApp
	add := func(name string, i int, classic, failing, drift bool) {
		point := stablePoint
		if classic {
			point = classicPoint
		}
		// A deterministic spread of the first expiry over (point, life].
		span := int64((tokenLife - point) / time.Second)
		offset := point + time.Duration(1+(int64(i)*7919)%span)*time.Second
		out = append(out, &simApp{name: name, point: point, expires: d.start().Add(offset), failing: failing, drift: drift})
	}
	for i := 0; i < d.Healthy; i++ {
		add(fmt.Sprintf("app-%04d", i), i, i%3 == 0, false, false)
	}
	for i := 0; i < min(d.Tickets, d.Healthy); i++ {
		key := registry.Credential{App: fmt.Sprintf("app-%04d", i), Ticket: registry.TicketJSAPI}.Key()
		add(key, i+1, true, false, false)
	}
	// The apps that need a person keep their timing whatever the number
	// of healthy apps, so that days of different sizes compare.
	for i := 0; i < d.Failing; i++ {
		add(fmt.Sprintf("failing-%d", i), 2*i+1, false, true, false)
	}
	for i := 0; i < d.Drifting; i++ {
		add(fmt.Sprintf("drifting-%d", i), 2*i+2, true, false, true)
	}
	return out
}

// dayRefresher is the refresher of the simulation: it decides which apps
// are due as the refresher does and reports the events it would.
type dayRefresher struct {
	d     *Day
	apps  []*simApp
	sink  Sink
	stats *DayStats
}

// RefreshDue implements schedule.Refresher.
func (r *dayRefresher) RefreshDue(ctx context.Context) (refresh.Report, error) {
	now := r.d.Now()
	rep := refresh.Report{Apps: len(r.apps)}
	for _, a := range r.apps {
		if now.Before(a.expires.Add(-a.point)) {
			rep.Outcomes = append(rep.Outcomes, refresh.Outcome{App: a.name, Status: refresh.StatusNotDue, ExpiresAt: a.expires})
			continue
		}
		a.calls++
		if a.failing {
			err := &wechat.Error{Op: wechat.OpToken, Code: wechatSysBusy, Msg: "system error"}
			r.sink.Observe(ctx, refresh.Event{App: a.name, Reason: "scheduled", Outcome: refresh.OutcomeFailed,
				Class: refresh.ClassOf(err), ErrCode: wechatSysBusy, CallsToday: a.calls})
			rep.Outcomes = append(rep.Outcomes, refresh.Outcome{App: a.name, Status: refresh.StatusFailed, Err: err, ExpiresAt: a.expires})
			r.stats.Failures++
			continue
		}
		a.expires = now.Add(tokenLife)
		r.sink.Observe(ctx, refresh.Event{App: a.name, Reason: "scheduled", Outcome: refresh.OutcomeRefreshed, CallsToday: a.calls, Drift: a.drift})
		rep.Outcomes = append(rep.Outcomes, refresh.Outcome{App: a.name, Status: refresh.StatusRefreshed, ExpiresAt: a.expires,
			Result: refresh.Result{App: a.name, ExpiresAt: a.expires, Version: int64(a.calls), Refreshed: true}})
		r.stats.Refreshes++
		if a.drift {
			r.stats.Drifts++
		}
	}
	return rep, nil
}

// Run runs the day into sink: every minute the real schedule handler
// (pkg/schedule) over the simulated refresher, and the API requests of the
// hour spread over its minutes. It fails only when the handler cannot run.
func (d *Day) Run(ctx context.Context, sink Sink) (DayStats, error) {
	runs := d.Runs
	if runs <= 0 {
		runs = 24 * 60
	}
	var stats DayStats
	r := &dayRefresher{d: d, apps: d.apps(), sink: sink, stats: &stats}
	h := &schedule.Handler{Refresher: r, Metrics: sink, Now: d.Now}
	for i := 0; i < runs; i++ {
		d.now = d.start().Add(time.Duration(i) * time.Minute)
		if _, err := h.Handle(ctx, json.RawMessage(`{}`)); err != nil && !strings.Contains(err.Error(), "need attention") {
			return stats, fmt.Errorf("metricstest: run %d: %w", i, err)
		}
		stats.Runs++
		if d.OnDemandPerHour > 0 && d.Healthy > 0 && i%60 < d.OnDemandPerHour {
			// One request in each of the hour's first OnDemandPerHour
			// minutes (at most 60), for the healthy apps in turn.
			a := r.apps[stats.Requests%d.Healthy]
			sink.Observe(ctx, refresh.Event{App: a.name, Reason: "on_demand", Outcome: refresh.OutcomeServed})
			sink.Response("refresh", 200)
			stats.Requests++
		}
	}
	return stats, nil
}
