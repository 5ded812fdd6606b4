// Package metrics writes CloudWatch metrics in the Embedded Metric Format
// (EMF): one JSON document per line on a writer (a Lambda function's stdout),
// from which CloudWatch Logs extracts the metrics. No client, no API call.
//
// Every distinct series (namespace, metric name, dimension set and
// dimension values) is a custom metric that CloudWatch bills for every hour
// in which it receives data ($0.30 a month when it receives data every
// hour). So the series are service-level, with the dimension Service (the
// stack name) alone or with one dimension of a small fixed set of values;
// a series per app (the dimension App) exists only while a person must act
// on that app: it fails, its calls are paused after an error a person must
// fix, its token is about to run out, or another party fetches its tokens.
// A healthy app adds no series at all, however many there are; its detail
// (app, reason, status, errcode) is in the functions' JSON logs, for
// CloudWatch Logs Insights. The series, with the Service dimension always
// present:
//
//	Metric               Unit    Dimension sets (besides Service)         Written
//	Refreshes            Count   Outcome; Reason; Credential              every refresher event
//	RefreshFailures      Count   none (alarm, Sum); App                   failed WeChat calls, failed publishes and commits, fenced holders
//	Drift                Count   none (alarm, Sum); App                   a token rotated behind wxtoken's back
//	PausedRefusals       Count   none; App                                calls refused because the app is paused after an error a person must fix
//	WeChatErrors         Count   ErrCode                                  WeChat's errcodes of failed calls
//	LockContention       Count   none                                     callers that waited for another holder's refresh
//	CoalescedRequests    Count   none                                     stale-token claims answered without a WeChat call of their own
//	CallsToday           Count   none                                     the calls today of the credential that just called WeChat (use Maximum: the busiest)
//	TokenRemainingLife   Seconds none (alarm, Minimum); App               every scheduled run; per App only below AppLifeFloor
//	AppsNeedingAttention Count   none (alarms, Maximum and SampleCount)   exactly one document per completed scheduled run (the heartbeat)
//	ApiResponses         Count   StatusClass (2xx, 4xx, 5xx)              every answer of the HTTP API
//	ApiInternalErrors    Count   none (alarm, Sum)                        answers 500: a fault of wxtoken or AWS, not of WeChat or the caller
//
// Tickets (jsapi_ticket, the card ticket, WeCom's agent_config ticket) are
// credentials like the token, with the same series and alarms: a ticket's
// failures count in RefreshFailures, its life in TokenRemainingLife (the
// near-expiry alarm), and where a series names the app, a ticket's App
// value is its credential key, "app#ticket" (shop#jsapi), so that a person
// sees which credential needs them. Refreshes by Credential (token, jsapi,
// wx_card, agent_config) shows the day's ticket refreshes beside the
// token's.
//
// The names, the namespace wxtoken and the Service-only series are the
// contract with the template's alarms. Outcome has 13 values, Reason 4,
// Credential 4, StatusClass 3 and ErrCode the few codes WeChat answers, so the
// service-level series are a few dozen at most whatever the number of apps;
// the per-app series are one or two per app that needs a person.
//
// Dimension values are app names, outcomes and errcodes: never a token or a
// secret. Write errors are ignored: metrics must never fail a refresh.
package metrics

import (
	"context"
	"encoding/json"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
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

// Metric names: the contract with the template's alarms and dashboards.
const (
	NameRefreshes            = "Refreshes"
	NameRefreshFailures      = "RefreshFailures"
	NameDrift                = "Drift"
	NamePausedRefusals       = "PausedRefusals"
	NameWeChatErrors         = "WeChatErrors"
	NameLockContention       = "LockContention"
	NameCoalescedRequests    = "CoalescedRequests"
	NameCallsToday           = "CallsToday"
	NameTokenRemainingLife   = "TokenRemainingLife"
	NameAppsNeedingAttention = "AppsNeedingAttention"
	NameApiResponses         = "ApiResponses"
	NameApiInternalErrors    = "ApiInternalErrors"
)

// Dimension names (Service is added to every set by Put).
const (
	DimService     = "Service"
	DimApp         = "App"
	DimOutcome     = "Outcome"
	DimReason      = "Reason"
	DimErrCode     = "ErrCode"
	DimStatusClass = "StatusClass"
	DimCredential  = "Credential"
)

// CredentialToken is the Credential dimension's value of an access token's
// event; a ticket's is the ticket's name (jsapi, wx_card, agent_config).
const CredentialToken = "token"

// credentialOf is the Credential dimension's value of an event's app (a
// ticket's events name its credential key, app#ticket).
func credentialOf(app string) string {
	if c := registry.ParseCredentialKey(app); c.Ticket != "" {
		return string(c.Ticket)
	}
	return CredentialToken
}

// AppLifeFloor: a scheduled run publishes an app's own TokenRemainingLife
// series only when its token has less than this left. A healthy app never
// does: a stable-mode token is refreshed when 270 s are left (WeChat's
// final window less the slack, refresh.DefaultStableWindow -
// refresh.DefaultStableSlack), a classic one 20 minutes before expiry; so
// an app below the floor missed its refresh. (The schedule's own NearExpiry,
// 10 minutes, would put every stable app in its own series for about six
// runs of every two hours.) The template's NearExpirySeconds is at most
// 269 for the same reason.
const AppLifeFloor = refresh.DefaultStableWindow - refresh.DefaultStableSlack

// Service-level and per-app dimension sets.
var (
	serviceOnly  = [][]string{{}}
	andApp       = [][]string{{}, {DimApp}}
	outcomeSets  = [][]string{{DimOutcome}, {DimReason}, {DimCredential}}
	errCodeSets  = [][]string{{DimErrCode}}
	statusSets   = [][]string{{DimStatusClass}}
	appSeriesSet = [][]string{{DimApp}}
)

// Doc is one EMF document: Metrics published under every dimension set in
// Sets (each with Service prepended), with the dimension values in Dims.
type Doc struct {
	Sets    [][]string
	Dims    map[string]string
	Metrics []Metric
}

// count is a Count metric of 1.
func count(name string) Metric { return Metric{Name: name, Unit: Count, Value: 1} }

// EventDocs decides the documents of one refresher event: Refreshes by
// Outcome, by Reason and by Credential; the counts a person acts on (RefreshFailures,
// Drift, PausedRefusals) at the service level and per App; WeChat's errcode
// of a failed call by ErrCode; and the service-level LockContention,
// CoalescedRequests and CallsToday. No series but the person-needing ones
// carries the app.
func EventDocs(ev refresh.Event) []Doc {
	docs := []Doc{{Sets: outcomeSets, Dims: map[string]string{DimOutcome: string(ev.Outcome), DimReason: ev.Reason, DimCredential: credentialOf(ev.App)},
		Metrics: []Metric{count(NameRefreshes)}}}
	var attention []Metric
	if ev.Failure() {
		attention = append(attention, count(NameRefreshFailures))
	}
	if ev.Drift {
		attention = append(attention, count(NameDrift))
	}
	if pausedForAPerson(ev) {
		attention = append(attention, count(NamePausedRefusals))
	}
	if len(attention) > 0 {
		docs = append(docs, Doc{Sets: andApp, Dims: map[string]string{DimApp: ev.App}, Metrics: attention})
	}
	if ev.ErrCode != 0 && ev.Outcome == refresh.OutcomeFailed {
		docs = append(docs, Doc{Sets: errCodeSets, Dims: map[string]string{DimErrCode: strconv.Itoa(ev.ErrCode)},
			Metrics: []Metric{count(NameWeChatErrors)}})
	}
	var service []Metric
	if ev.Waited() {
		service = append(service, count(NameLockContention))
	}
	// Callers whose claim of a stale token was answered without a WeChat
	// call of their own (plain reads of the published token are not).
	if ev.Outcome == refresh.OutcomeCoalesced || ev.Outcome == refresh.OutcomeServed && ev.Reason == "on_demand" {
		service = append(service, count(NameCoalescedRequests))
	}
	if ev.CallsToday > 0 {
		service = append(service, Metric{Name: NameCallsToday, Unit: Count, Value: float64(ev.CallsToday)})
	}
	if len(service) > 0 {
		docs = append(docs, Doc{Sets: serviceOnly, Metrics: service})
	}
	return docs
}

// pausedForAPerson reports a call refused because the app's calls are
// paused after an error that pages (a configuration error, WeChat's daily
// quota): not the minute quota's pause, a budget or an interval.
func pausedForAPerson(ev refresh.Event) bool {
	return ev.Outcome == refresh.OutcomeRefused && ev.Class != refresh.ClassNone && refresh.Policy(ev.Class).Page
}

// LifeDocs decides the documents of a scheduled run's token lives: the
// shortest as the Service series (the alarm's), and per App only the lives
// in low under AppLifeFloor.
func LifeDocs(shortest time.Duration, low map[string]time.Duration) []Doc {
	docs := []Doc{{Sets: serviceOnly, Metrics: []Metric{{Name: NameTokenRemainingLife, Unit: Seconds, Value: shortest.Seconds()}}}}
	apps := make([]string, 0, len(low))
	for app, left := range low {
		if left < AppLifeFloor {
			apps = append(apps, app)
		}
	}
	sort.Strings(apps)
	for _, app := range apps {
		docs = append(docs, Doc{Sets: appSeriesSet, Dims: map[string]string{DimApp: app},
			Metrics: []Metric{{Name: NameTokenRemainingLife, Unit: Seconds, Value: low[app].Seconds()}}})
	}
	return docs
}

// ResponseDocs decides the documents of one answer of the HTTP API:
// ApiResponses by StatusClass, and ApiInternalErrors for a 500.
func ResponseDocs(status int) []Doc {
	docs := []Doc{{Sets: statusSets, Dims: map[string]string{DimStatusClass: strconv.Itoa(status/100) + "xx"},
		Metrics: []Metric{count(NameApiResponses)}}}
	if status == 500 {
		docs = append(docs, Doc{Sets: serviceOnly, Metrics: []Metric{count(NameApiInternalErrors)}})
	}
	return docs
}

// write puts every document of docs.
func (e *EMF) write(docs []Doc) {
	for _, d := range docs {
		e.Put(d.Sets, d.Dims, d.Metrics...)
	}
}

// Observe turns a refresher's event into metrics (EventDocs); set it as
// refresh.Refresher.Observe.
func (e *EMF) Observe(_ context.Context, ev refresh.Event) { e.write(EventDocs(ev)) }

// RemainingLife records a scheduled run's token lives (negative when
// expired): see LifeDocs. One document per app per run would cost a log
// line per app every minute (1,000 apps: about 0.4 GB of logs a day) and a
// series per app, for series nobody looks at while the apps are healthy.
func (e *EMF) RemainingLife(shortest time.Duration, low map[string]time.Duration) {
	e.write(LifeDocs(shortest, low))
}

// NeedingAttention records how many apps of a scheduled run need a person:
// exactly one document, Service-only, per run; the alarms read its Maximum
// and its SampleCount (the schedule's heartbeat).
func (e *EMF) NeedingAttention(n int) {
	e.Put(serviceOnly, nil, Metric{Name: NameAppsNeedingAttention, Unit: Count, Value: float64(n)})
}

// Response records one answer of the HTTP API (ResponseDocs); set it with
// api.Handler.WithMetrics.
func (e *EMF) Response(_ string, status int) { e.write(ResponseDocs(status)) }
