package schedule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/schedule"
)

// fuzzMarker may be planted in an event: an error must never quote it.
const fuzzMarker = "Zq8MARKERxK2v7Lw0Pn4Ty6Rb3Hs"

// fuzzRuns is a Refresher that counts its runs and has nothing to refresh.
type fuzzRuns struct{ n int }

func (r *fuzzRuns) RefreshDue(context.Context) (refresh.Report, error) {
	r.n++
	return refresh.Report{}, nil
}

// FuzzScheduleEvent hands arbitrary events to Handle. Any JSON object (an
// EventBridge scheduled event, another event, {} by hand) runs the refresh
// once and succeeds; anything else (not JSON, an array, a string, null,
// trailing data) fails without running it and without quoting the event.
// Whether a payload is a JSON object is judged by json.Valid and its first
// byte, not by the handler's decoding.
func FuzzScheduleEvent(f *testing.F) {
	f.Add([]byte(`{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event","source":"aws.events","time":"2026-11-21T08:00:00Z","detail":{}}`), uint16(0))
	f.Add([]byte(`{}`), uint16(0))
	f.Add([]byte(`{"id":42,"detail-type":["Scheduled Event"]}`), uint16(0))
	f.Add([]byte(`["not","an","object"]`), uint16(2))
	f.Add([]byte(`{"detail-type":"Scheduled Event"} {}`), uint16(12))
	f.Add([]byte("\xef\xbb\xbf{}"), uint16(0))
	f.Add([]byte(`null`), uint16(0))
	f.Fuzz(func(t *testing.T, event []byte, at uint16) {
		if at > 0 {
			i := int(at-1) % (len(event) + 1)
			event = slices.Concat(event[:i:i], []byte(fuzzMarker), event[i:])
		}
		trimmed := bytes.TrimLeft(event, " \t\r\n")
		isObject := json.Valid(event) && bytes.HasPrefix(trimmed, []byte("{"))

		var logs bytes.Buffer
		runs := &fuzzRuns{}
		h := &schedule.Handler{Refresher: runs, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
		sum, err := h.Handle(context.Background(), event)
		switch {
		case isObject && (err != nil || runs.n != 1):
			t.Errorf("a JSON object of %d bytes: error %v, %d runs; want none and one run", len(event), err, runs.n)
		case isObject && (sum.Counts == nil || sum.NeedsAttention == nil):
			t.Errorf("a JSON object: summary %+v has nil counts or list", sum)
		case !isObject && (err == nil || runs.n != 0):
			t.Errorf("no JSON object (%d bytes): error %v, %d runs; want an error and no run", len(event), err != nil, runs.n)
		case !isObject && strings.Contains(err.Error(), fuzzMarker):
			t.Errorf("the error quotes the event")
		}
	})
}
