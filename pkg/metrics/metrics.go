// Package metrics writes CloudWatch metrics in the Embedded Metric Format
// (EMF): one JSON document per line on a writer (a Lambda function's stdout),
// from which CloudWatch Logs extracts the metrics. No client, no API call.
//
// Every series carries the dimension Service (the stack name), so that two
// stacks in one account never mix, and most also a per-app series. The
// metric names are the contract with the template's alarms:
//
//	Refreshes            Count   every refresh outcome, by Outcome, by App and Outcome, by Reason
//	RefreshFailures      Count   failed WeChat calls, failed publishes, fenced holders (alarm)
//	WeChatErrors         Count   WeChat's errcodes, by ErrCode
//	Drift                Count   a token rotated behind wxtoken's back (alarm)
//	LockContention       Count   callers that waited for another holder's refresh
//	CoalescedRequests    Count   stale-token claims answered without a WeChat call of their own
//	ApiResponses         Count   the HTTP API's answers, by StatusClass (2xx, 4xx, 5xx)
//	ApiInternalErrors    Count   answers 500: a fault of wxtoken or AWS, not of WeChat or the caller (alarm)
//	CallsToday           Count   WeChat credential calls used today, per App (use Maximum)
//	TokenRemainingLife   Seconds the shortest token life at every scheduled run (alarm on Minimum); per App when near expiry
//	AppsNeedingAttention Count   per scheduled run (alarm)
//
// Dimension values are app names, outcomes and errcodes: never a token or a
// secret. Write errors are ignored: metrics must never fail a refresh.
package metrics

import (
	"context"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
)

// Namespace is the CloudWatch namespace of every metric.
const Namespace = "wxtoken"

// Units used here (CloudWatch's names).
const (
	Count   = "Count"
	Seconds = "Seconds"
)

// Metric is one named value.
type Metric struct {
	Name  string
	Unit  string
	Value float64
}

// EMF writes EMF documents to W. The zero value is not usable: set W and
// Service. EMF is safe for concurrent use; documents never interleave.
type EMF struct {
	W io.Writer
	// Service is the value of the Service dimension (the stack name).
	Service string
	// Now stamps documents; nil is time.Now.
	Now func() time.Time

	mu sync.Mutex
}

// Put writes one document holding ms, published under every dimension set
// in sets (each gets Service prepended) with the dimension values in dims.
func (e *EMF) Put(sets [][]string, dims map[string]string, ms ...Metric) {
	if e == nil || e.W == nil || len(ms) == 0 {
		return
	}
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	type def struct {
		Name string `json:"Name"`
		Unit string `json:"Unit"`
	}
	type directive struct {
		Namespace  string     `json:"Namespace"`
		Dimensions [][]string `json:"Dimensions"`
		Metrics    []def      `json:"Metrics"`
	}
	service := e.Service
	if service == "" {
		service = Namespace
	}
	// CloudWatch rejects an empty dimension value: a set with one is
	// dropped, the Service series remains.
	dimSets := make([][]string, 0, len(sets))
sets:
	for _, s := range sets {
		for _, k := range s {
			if dims[k] == "" {
				continue sets
			}
		}
		dimSets = append(dimSets, append([]string{"Service"}, s...))
	}
	if len(dimSets) == 0 {
		dimSets = [][]string{{"Service"}}
	}
	d := directive{Namespace: Namespace, Dimensions: dimSets}
	doc := map[string]any{}
	for k, v := range dims {
		if v != "" {
			doc[k] = v
		}
	}
	doc["Service"] = service
	for _, m := range ms {
		d.Metrics = append(d.Metrics, def{Name: m.Name, Unit: m.Unit})
		doc[m.Name] = m.Value
	}
	doc["_aws"] = map[string]any{
		"Timestamp":         now().UnixMilli(),
		"CloudWatchMetrics": []directive{d},
	}
	line, err := json.Marshal(doc)
	if err != nil {
		return
	}
	line = append(line, '\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.W.Write(line)
}

var (
	byApp     = [][]string{{}, {"App"}}
	byOutcome = [][]string{{"Outcome"}, {"App", "Outcome"}, {"Reason"}}
	byErrCode = [][]string{{"ErrCode"}, {"App", "ErrCode"}}
	appOnly   = [][]string{{"App"}}
)

// Observe turns a refresher's event into metrics; set it as
// refresh.Refresher.Observe.
func (e *EMF) Observe(_ context.Context, ev refresh.Event) {
	e.Put(byOutcome, map[string]string{"App": ev.App, "Outcome": string(ev.Outcome), "Reason": ev.Reason},
		Metric{Name: "Refreshes", Unit: Count, Value: 1})
	var ms []Metric
	if ev.Failure() {
		ms = append(ms, Metric{Name: "RefreshFailures", Unit: Count, Value: 1})
	}
	if ev.Drift {
		ms = append(ms, Metric{Name: "Drift", Unit: Count, Value: 1})
	}
	if ev.Waited() {
		ms = append(ms, Metric{Name: "LockContention", Unit: Count, Value: 1})
	}
	// Callers whose claim of a stale token was answered without a WeChat
	// call of their own (plain reads of the published token are not).
	if ev.Outcome == refresh.OutcomeCoalesced || ev.Outcome == refresh.OutcomeServed && ev.Reason == "on_demand" {
		ms = append(ms, Metric{Name: "CoalescedRequests", Unit: Count, Value: 1})
	}
	e.Put(byApp, map[string]string{"App": ev.App}, ms...)
	if ev.ErrCode != 0 && ev.Outcome == refresh.OutcomeFailed {
		e.Put(byErrCode, map[string]string{"App": ev.App, "ErrCode": strconv.Itoa(ev.ErrCode)},
			Metric{Name: "WeChatErrors", Unit: Count, Value: 1})
	}
	if ev.CallsToday > 0 {
		e.Put(appOnly, map[string]string{"App": ev.App}, Metric{Name: "CallsToday", Unit: Count, Value: float64(ev.CallsToday)})
	}
}

// RemainingLife records a scheduled run's token lives (negative when
// expired): the shortest one as the Service series the alarm reads, and
// per App only those in low. One document per app per run would cost a log
// line per app every minute (1,000 apps: about 0.4 GB of logs a day) for
// series nobody looks at while they are healthy.
func (e *EMF) RemainingLife(shortest time.Duration, low map[string]time.Duration) {
	e.Put([][]string{{}}, nil, Metric{Name: "TokenRemainingLife", Unit: Seconds, Value: shortest.Seconds()})
	for app, left := range low {
		e.Put(appOnly, map[string]string{"App": app}, Metric{Name: "TokenRemainingLife", Unit: Seconds, Value: left.Seconds()})
	}
}

// NeedingAttention records how many apps of a scheduled run need a person.
func (e *EMF) NeedingAttention(n int) {
	e.Put([][]string{{}}, nil, Metric{Name: "AppsNeedingAttention", Unit: Count, Value: float64(n)})
}

// Response records one answer of the HTTP API; set it with
// api.Handler.WithMetrics.
func (e *EMF) Response(_ string, status int) {
	class := strconv.Itoa(status/100) + "xx"
	ms := []Metric{{Name: "ApiResponses", Unit: Count, Value: 1}}
	e.Put([][]string{{"StatusClass"}}, map[string]string{"StatusClass": class}, ms...)
	if status == 500 {
		e.Put([][]string{{}}, nil, Metric{Name: "ApiInternalErrors", Unit: Count, Value: 1})
	}
}
