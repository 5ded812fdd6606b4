package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wxtoken/wxtoken/pkg/api"
	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

const (
	liveToken = "LIVE_TOKEN_0123456789abcdef"
	newToken  = "NEW_TOKEN_fedcba9876543210"
)

var expires = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// stub is a Refresher that knows one app, "demo", and records its calls.
type stub struct {
	mu    sync.Mutex
	calls []string
	err   error // returned by every method when set
}

func (s *stub) record(call string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
	return s.err
}

func (s *stub) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func (s *stub) Refresh(_ context.Context, app, stale string) (refresh.Result, error) {
	if err := s.record(fmt.Sprintf("refresh %s stale=%q", app, stale)); err != nil {
		return refresh.Result{}, err
	}
	if app != "demo" {
		return refresh.Result{}, fmt.Errorf("%w: %s", refresh.ErrUnknownApp, app)
	}
	if stale == "" || stale != liveToken {
		return refresh.Result{App: app, Token: liveToken, Version: 3, ExpiresAt: expires, Refreshed: stale != ""}, nil
	}
	return refresh.Result{App: app, Token: newToken, Version: 4, ExpiresAt: expires, Refreshed: true}, nil
}

func (s *stub) ForceRefresh(_ context.Context, app string) (refresh.Result, error) {
	if err := s.record("force " + app); err != nil {
		return refresh.Result{}, err
	}
	if app != "demo" {
		return refresh.Result{}, fmt.Errorf("%w: %s", refresh.ErrUnknownApp, app)
	}
	return refresh.Result{App: app, Token: newToken, Version: 4, ExpiresAt: expires, Refreshed: true}, nil
}

func (s *stub) RefreshTicket(_ context.Context, app string, ticket registry.Ticket, stale string) (refresh.Result, error) {
	if err := s.record(fmt.Sprintf("ticket %s %s stale=%q", app, ticket, stale)); err != nil {
		return refresh.Result{}, err
	}
	switch {
	case app != "demo":
		return refresh.Result{}, fmt.Errorf("%w: %s", refresh.ErrUnknownApp, app)
	case ticket != registry.TicketJSAPI:
		return refresh.Result{}, fmt.Errorf("%w: %s has no %s ticket", refresh.ErrUnknownTicket, app, ticket)
	}
	if stale == "" || stale != liveTicket {
		return refresh.Result{App: app, Token: liveTicket, Version: 2, ExpiresAt: expires, Refreshed: stale != ""}, nil
	}
	return refresh.Result{App: app, Token: newTicket, Version: 3, ExpiresAt: expires, Refreshed: true}, nil
}

// newTicket is the ticket the stub answers a claim against liveTicket with.
const newTicket = "NEW_TICKET_bxLdikRXVbTPdHSM05e5u5sUoXNKd8-41ZO3MhKoyN5OfkWITDGgnr2fwJ0m9E8"

func (s *stub) Status(_ context.Context, app string) (refresh.Status, error) {
	if err := s.record("status " + app); err != nil {
		return refresh.Status{}, err
	}
	if app != "demo" {
		return refresh.Status{}, fmt.Errorf("%w: %s", refresh.ErrUnknownApp, app)
	}
	return refresh.Status{App: app, AppID: "wxdemo0000000001", Kind: "offiaccount", Mode: "stable", Version: 3, Published: true,
		Generation: 3, Fingerprint: wechat.Fingerprint(liveToken), ExpiresAt: expires, CallsToday: 2, DailyBudget: 1000,
		LastError: "wechat: stable_token: errcode 40164: invalid ip 203.0.113.9", LastErrCode: 40164, ErrorClass: "config",
		LastErrorAt: expires.Add(-time.Hour),
		Tickets: []refresh.Status{{App: app, Ticket: registry.TicketJSAPI, Version: 2, Published: true, Generation: 2,
			Fingerprint: wechat.Fingerprint(liveTicket), ExpiresAt: expires, CallsToday: 1, DailyBudget: registry.DefaultTicketBudget,
			LastError: "the access token the ticket call needs could not be had", ErrorClass: string(refresh.ClassTokenUnavailable), LastErrorAt: expires.Add(-time.Hour)}},
	}, nil
}

// liveTicket is a ticket the stub's status describes (never shows).
const liveTicket = "kgt8ON7yVITDhtdwci0qeZ3xUtvLtQoOZDqd8wKdgcDOz8pt8v9ZQsrgw4yuxP1Ij5nGuIz0eCSyjZEkXLFFTw"

// response is a decoded API answer.
type response struct {
	Status  int
	Header  http.Header
	Body    map[string]any
	RawBody string
}

func (r response) errorCode() string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func invoke(t *testing.T, h *api.Handler, payload []byte) response {
	t.Helper()
	out, err := h.Invoke(context.Background(), payload)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("answer %s is not an HTTP API response: %v", out, err)
	}
	r := response{Status: resp.StatusCode, Header: http.Header{}, RawBody: resp.Body}
	for k, v := range resp.Headers {
		r.Header.Set(k, v)
	}
	if resp.Body != "" {
		if err := json.Unmarshal([]byte(resp.Body), &r.Body); err != nil {
			t.Fatalf("body %q is not JSON: %v", resp.Body, err)
		}
	}
	return r
}

// TestEvents drives the Lambda entry point with every API sample in events/.
func TestEvents(t *testing.T) {
	want := map[string]struct {
		status int
		code   string // error code, "" for 200
		call   string // the refresher call made, "" for none
	}{
		"api-refresh.json":                 {200, "", `refresh demo stale="STALE_TOKEN_SAMPLE"`},
		"api-refresh-base64.json":          {200, "", `refresh demo stale="STALE_TOKEN_SAMPLE"`},
		"api-refresh-no-body.json":         {200, "", `refresh demo stale=""`},
		"api-force-refresh.json":           {200, "", "force demo"},
		"api-status.json":                  {200, "", "status demo"},
		"api-refresh-malformed-json.json":  {400, "malformed_body", ""},
		"api-refresh-unknown-field.json":   {400, "malformed_body", ""},
		"api-refresh-wrong-type.json":      {400, "malformed_body", ""},
		"api-refresh-oversized.json":       {400, "body_too_large", ""},
		"api-refresh-unknown-app.json":     {404, "unknown_app", `refresh no-such-app stale="STALE_TOKEN_SAMPLE"`},
		"api-status-unknown-app.json":      {404, "unknown_app", "status no-such-app"},
		"api-refresh-invalid-app.json":     {400, "invalid_app_name", ""},
		"api-force-refresh-with-body.json": {400, "malformed_body", ""},
		"api-not-an-http-event.json":       {400, "malformed_event", ""},
		"api-ticket-refresh.json":          {200, "", `ticket demo jsapi stale="STALE_TICKET_SAMPLE"`},
	}
	files, err := filepath.Glob("../../events/api-*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no API events found (%v)", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("%s has no expectation in this test; add one", name)
			}
			payload, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			s := &stub{}
			h := api.New(s, slog.New(slog.NewJSONHandler(&logs, nil)))
			r := invoke(t, h, payload)
			if r.Status != w.status || r.errorCode() != w.code {
				t.Errorf("status %d code %q, want %d %q; body %s", r.Status, r.errorCode(), w.status, w.code, r.RawBody)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			calls := s.Calls()
			if w.call == "" && len(calls) != 0 || w.call != "" && (len(calls) != 1 || calls[0] != w.call) {
				t.Errorf("refresher calls %q, want %q", calls, w.call)
			}
			if w.status != 200 {
				msg, _ := r.Body["error"].(map[string]any)["message"].(string)
				if msg == "" {
					t.Errorf("error without a message: %s", r.RawBody)
				}
				if strings.Contains(r.RawBody, liveToken) || strings.Contains(r.RawBody, "STALE_TOKEN_SAMPLE") {
					t.Errorf("error body quotes a token: %s", r.RawBody)
				}
			}
			for _, secret := range []string{liveToken, newToken, "STALE_TOKEN_SAMPLE", "AAAAAAAAAA"} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("log holds %q:\n%s", secret, logs.String())
				}
			}
			if !strings.Contains(logs.String(), `"status":`+fmt.Sprint(w.status)) {
				t.Errorf("no audit line with the status:\n%s", logs.String())
			}
		})
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("expected event %s is missing from events/", name)
		}
	}
}

func TestTokenAnswer(t *testing.T) {
	payload, err := os.ReadFile("../../events/api-refresh.json")
	if err != nil {
		t.Fatal(err)
	}
	// The sample's stale token is not the live one: the live one comes back.
	r := invoke(t, api.New(&stub{}, nil), payload)
	got := r.Body
	want := map[string]any{"app": "demo", "access_token": liveToken, "version": float64(3),
		"expires_at": "2026-11-21T10:00:00Z", "refreshed": true}
	if len(got) != len(want) {
		t.Errorf("body %v has fields other than %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestStatusAnswer(t *testing.T) {
	srv := httptest.NewServer(api.New(&stub{}, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/apps/demo")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), liveToken) {
		t.Errorf("status answer holds the token: %s", raw)
	}
	for k, v := range map[string]any{"app": "demo", "version": float64(3), "published": true, "generation": float64(3),
		"fingerprint": wechat.Fingerprint(liveToken), "calls_today": float64(2), "daily_budget": float64(1000),
		"expires_at": "2026-11-21T10:00:00Z", "mode": "stable", "kind": "offiaccount"} {
		if body[k] != v {
			t.Errorf("%s = %v, want %v", k, body[k], v)
		}
	}
	le, _ := body["last_error"].(map[string]any)
	if le["wechat_errcode"] != float64(40164) || !strings.Contains(fmt.Sprint(le["message"]), "203.0.113.9") {
		t.Errorf("last_error = %v, want errcode 40164 quoting the IP", le)
	}
	if strings.Contains(string(raw), liveTicket) {
		t.Errorf("status answer holds the ticket: %s", raw)
	}
	tickets, _ := body["tickets"].([]any)
	if len(tickets) != 1 {
		t.Fatalf("tickets = %v, want the jsapi ticket", body["tickets"])
	}
	tk, _ := tickets[0].(map[string]any)
	for k, v := range map[string]any{"ticket": "jsapi", "version": float64(2), "published": true, "generation": float64(2),
		"fingerprint": wechat.Fingerprint(liveTicket), "calls_today": float64(1), "daily_budget": float64(registry.DefaultTicketBudget),
		"expires_at": "2026-11-21T10:00:00Z"} {
		if tk[k] != v {
			t.Errorf("tickets[0].%s = %v, want %v", k, tk[k], v)
		}
	}
	if e, _ := tk["last_error"].(map[string]any); e["class"] != string(refresh.ClassTokenUnavailable) {
		t.Errorf("tickets[0].last_error = %v, want class %s", tk["last_error"], refresh.ClassTokenUnavailable)
	}
}

func TestErrors(t *testing.T) {
	current := refresh.Result{App: "demo", Token: liveToken, Version: 3, ExpiresAt: expires}
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		errcode    float64
		retryAfter string
		withToken  bool
	}{
		{"unknown app", fmt.Errorf("%w: x", refresh.ErrUnknownApp), 404, "unknown_app", 0, "", false},
		{"daily budget", &refresh.RefusedError{App: "demo", Reason: refresh.ReasonDailyBudget, RetryAfter: 90 * time.Minute, Current: current}, 429, "refresh_refused", 0, "5400", true},
		{"min interval rounds up", &refresh.RefusedError{App: "demo", Reason: refresh.ReasonMinInterval, RetryAfter: 1500 * time.Millisecond, Current: current}, 429, "refresh_refused", 0, "2", true},
		{"blocked", &refresh.RefusedError{App: "demo", Reason: refresh.ReasonBlocked, RetryAfter: time.Minute, ErrCode: 40164, Current: current}, 429, "refresh_refused", 40164, "60", true},
		{"paused: another registration keeps the ticket", &refresh.RefusedError{App: "demo", Reason: refresh.ReasonBlocked, RetryAfter: time.Minute, Class: refresh.ClassInvalid, Current: current}, 429, "refresh_refused", 0, "60", true},
		{"refused without a token", &refresh.RefusedError{App: "demo", Reason: refresh.ReasonBlocked, RetryAfter: time.Minute, ErrCode: 45009}, 429, "refresh_refused", 45009, "60", false},
		{"wechat refused", fmt.Errorf("refresh: demo: %w", &wechat.Error{Op: wechat.OpStableToken, Code: 40164, Msg: "invalid ip 203.0.113.9, not in whitelist"}), 502, "wechat_error", 40164, "", false},
		{"waited for a failed refresh", &refresh.FailedError{App: "demo", ErrCode: 40013, Message: "invalid appid"}, 502, "wechat_error", 40013, "", false},
		{"waited for a refresh that failed outside WeChat", &refresh.FailedError{App: "demo", Class: refresh.ClassInternal, Message: "publish failed: AccessDeniedException: arn:aws:iam::123456789012:role/x"}, 500, "internal", 0, "", false},
		// Review A2: AWS throttling is "retry shortly", not an internal error.
		{"waited for a refresh that AWS throttled", &refresh.FailedError{App: "demo", Class: refresh.ClassUnavailable, Message: "commit failed: ThrottlingException"}, 503, "aws_unavailable", 0, "2", false},
		{"DynamoDB throttled", fmt.Errorf("refresh: demo: %w", leasetest.Throttled()), 503, "aws_unavailable", 0, "2", false},
		{"SSM throttled", fmt.Errorf("refresh: demo: %w", tokenstoretest.Throttled()), 503, "aws_unavailable", 0, "2", false},
		// Review C2: a claim WeChat could not confirm rotates nothing.
		{"claim unverified", fmt.Errorf("refresh: demo: %w", refresh.ErrUnverified), 503, "claim_unverified", 0, "30", false},
		{"waited for a refresh that could not reach WeChat", &refresh.FailedError{App: "demo", Class: "retryable", Message: "wechat: token: connection refused"}, 502, "wechat_unavailable", 0, "5", false},
		{"wechat unreachable", fmt.Errorf("refresh: demo: %w", &wechat.TransportError{Op: wechat.OpToken, Err: errors.New("connection refused")}), 502, "wechat_unavailable", 0, "5", false},
		{"lock timeout", fmt.Errorf("%w (app demo)", refresh.ErrLockTimeout), 503, "refresh_in_progress", 0, "1", false},
		{"deadline", fmt.Errorf("refresh: demo: %w", context.DeadlineExceeded), 503, "timeout", 0, "1", false},
		// A registration the scheduled run rejects needs a person, not an
		// internal-errors alarm: 409, saying where to look.
		{"invalid registration", fmt.Errorf("refresh: demo: %w", &registry.InvalidError{App: "demo", Reason: "mode: stable is not a mode of a WeCom app"}), 409, "invalid_registration", 0, "", false},
		{"anything else", errors.New("dynamodb: ProvisionedThroughputExceeded: table wxtoken-StateTable"), 500, "internal", 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			srv := httptest.NewServer(api.New(&stub{err: tt.err}, slog.New(slog.NewJSONHandler(&logs, nil))))
			defer srv.Close()
			resp, err := http.Post(srv.URL+"/v1/apps/demo/refresh", "application/json", strings.NewReader(`{"stale_token":"`+liveToken+`"}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %q: %v", raw, err)
			}
			e, _ := body["error"].(map[string]any)
			if resp.StatusCode != tt.status || e["code"] != tt.code {
				t.Errorf("status %d code %v, want %d %s (%s)", resp.StatusCode, e["code"], tt.status, tt.code, raw)
			}
			if got, _ := e["wechat_errcode"].(float64); got != tt.errcode {
				t.Errorf("wechat_errcode %v, want %v", got, tt.errcode)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if has := body["access_token"] == liveToken; has != tt.withToken {
				t.Errorf("current token in the answer: %v, want %v (%s)", has, tt.withToken, raw)
			}
			if tt.status == 500 && (strings.Contains(string(raw), "dynamodb") || strings.Contains(string(raw), "StateTable") || strings.Contains(string(raw), "arn:")) {
				t.Errorf("500 answer leaks internals: %s", raw)
			}
			if tt.status >= 500 && !strings.Contains(logs.String(), `"error":`) {
				t.Errorf("the cause of a %d is not logged:\n%s", tt.status, logs.String())
			}
			if strings.Contains(logs.String(), liveToken) {
				t.Errorf("log holds the token:\n%s", logs.String())
			}
		})
	}
}

// send serves one request with h on a test server and returns the answer
// and its body.
func send(t *testing.T, h http.Handler, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

func TestRequests(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
		call   string
		allow  string
	}{
		{"no body asks for the published token", "POST", "/v1/apps/demo/refresh", "", 200, "", `refresh demo stale=""`, ""},
		{"empty object", "POST", "/v1/apps/demo/refresh", "{}", 200, "", `refresh demo stale=""`, ""},
		{"null stale token", "POST", "/v1/apps/demo/refresh", `{"stale_token":null}`, 400, "malformed_body", "", ""},
		{"null body", "POST", "/v1/apps/demo/refresh", `null`, 400, "malformed_body", "", ""},
		{"a token as a field name is not echoed", "POST", "/v1/apps/demo/refresh", `{"` + liveToken + `":"x"}`, 400, "malformed_body", "", ""},
		{"field name in another case", "POST", "/v1/apps/demo/refresh", `{"STALE_TOKEN":"abc"}`, 400, "malformed_body", "", ""},
		{"duplicate field", "POST", "/v1/apps/demo/refresh", `{"stale_token":"a","stale_token":"b"}`, 400, "malformed_body", "", ""},
		{"truncated object", "POST", "/v1/apps/demo/refresh", `{"stale_token":"a"`, 400, "malformed_body", "", ""},
		{"force with a field", "POST", "/v1/apps/demo/force-refresh", `{"stale_token":"a"}`, 400, "malformed_body", "", ""},
		{"whitespace around the object", "POST", "/v1/apps/demo/refresh", " \n{\"stale_token\":\"abc\"}\n ", 200, "", `refresh demo stale="abc"`, ""},
		{"two objects", "POST", "/v1/apps/demo/refresh", `{"stale_token":"a"}{"stale_token":"b"}`, 400, "malformed_body", "", ""},
		{"an array", "POST", "/v1/apps/demo/refresh", `["a"]`, 400, "malformed_body", "", ""},
		{"stale token too long", "POST", "/v1/apps/demo/refresh", `{"stale_token":"` + strings.Repeat("x", 2049) + `"}`, 400, "malformed_body", "", ""},
		{"body just over the limit", "POST", "/v1/apps/demo/refresh", `{"stale_token":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`, 400, "body_too_large", "", ""},
		{"force with {}", "POST", "/v1/apps/demo/force-refresh", "{}", 200, "", "force demo", ""},
		{"GET on refresh", "GET", "/v1/apps/demo/refresh", "", 405, "method_not_allowed", "", "POST"},
		{"POST on status", "POST", "/v1/apps/demo", "", 405, "method_not_allowed", "", "GET, HEAD"},
		{"unknown route", "GET", "/v1/apps", "", 404, "not_found", "", ""},
		{"unknown action", "POST", "/v1/apps/demo/rotate", "", 404, "not_found", "", ""},
		{"trailing slash", "GET", "/v1/apps/demo/", "", 404, "not_found", "", ""},
		{"upper-case app", "GET", "/v1/apps/Demo", "", 400, "invalid_app_name", "", ""},
		{"escaped slash in app", "GET", "/v1/apps/de%2Fmo", "", 400, "invalid_app_name", "", ""},
		{"escaped slash making a route", "POST", "/v1/apps/demo%2Frefresh", "", 405, "method_not_allowed", "", "GET, HEAD"},
		{"app name too long", "GET", "/v1/apps/" + strings.Repeat("a", 64), "", 400, "invalid_app_name", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &stub{}
			resp, raw := send(t, api.New(s, nil), tt.method, tt.path, tt.body)
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", raw, err)
			}
			code := ""
			if e, ok := body["error"].(map[string]any); ok {
				code, _ = e["code"].(string)
			}
			if resp.StatusCode != tt.status || code != tt.code {
				t.Errorf("status %d code %q, want %d %q: %s", resp.StatusCode, code, tt.status, tt.code, raw)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			calls := s.Calls()
			if tt.call == "" && len(calls) != 0 || tt.call != "" && (len(calls) != 1 || calls[0] != tt.call) {
				t.Errorf("refresher calls %q, want %q", calls, tt.call)
			}
			if resp.StatusCode != 200 && strings.Contains(string(raw), liveToken[:16]) {
				t.Errorf("the error answer echoes a token: %s", raw)
			}
		})
	}
}

// TestLambdaRequestShapes covers what the adapter must translate: a named
// stage in the path, the caller's identity in the audit log, HEAD.
func TestLambdaRequestShapes(t *testing.T) {
	payload, err := os.ReadFile("../../events/api-status.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(payload, &ev); err != nil {
		t.Fatal(err)
	}

	t.Run("the route API Gateway matched wins over the raw path", func(t *testing.T) {
		e := ev
		e.RawPath = "/something/else"
		s := &stub{}
		resp, _ := api.New(s, nil).Lambda(context.Background(), e)
		if resp.StatusCode != 200 || len(s.Calls()) != 1 || s.Calls()[0] != "status demo" {
			t.Errorf("status %d calls %q", resp.StatusCode, s.Calls())
		}
	})
	t.Run("an app with a slash is one invalid segment", func(t *testing.T) {
		e := ev
		e.PathParameters = map[string]string{"app": "demo/refresh"}
		s := &stub{}
		resp, _ := api.New(s, nil).Lambda(context.Background(), e)
		if resp.StatusCode != 400 || len(s.Calls()) != 0 {
			t.Errorf("status %d calls %q, want 400 (invalid app name) and no call", resp.StatusCode, s.Calls())
		}
	})
	t.Run("deadline headroom", func(t *testing.T) {
		var got time.Time
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		dl, _ := ctx.Deadline()
		api.New(deadlineSpy{&got}, nil).Lambda(ctx, ev)
		if got.IsZero() || dl.Sub(got) < api.Headroom {
			t.Errorf("refresher deadline %v, Lambda's %v: want %v headroom", got, dl, api.Headroom)
		}
	})
	t.Run("named stage without a route key", func(t *testing.T) {
		e := ev
		e.RouteKey = "$default"
		e.RequestContext.Stage = "prod"
		e.RawPath = "/prod/v1/apps/demo"
		s := &stub{}
		resp, _ := api.New(s, nil).Lambda(context.Background(), e)
		if resp.StatusCode != 200 || len(s.Calls()) != 1 || s.Calls()[0] != "status demo" {
			t.Errorf("status %d calls %q, want 200 [status demo]: %s", resp.StatusCode, s.Calls(), resp.Body)
		}
	})
	t.Run("audit log names the IAM caller", func(t *testing.T) {
		var logs bytes.Buffer
		resp, _ := api.New(&stub{}, slog.New(slog.NewJSONHandler(&logs, nil))).Lambda(context.Background(), ev)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		var line struct {
			Caller struct {
				ARN       string `json:"arn"`
				Account   string `json:"account"`
				SourceIP  string `json:"source_ip"`
				RequestID string `json:"request_id"`
			} `json:"caller"`
			Route string `json:"route"`
			App   string `json:"app"`
		}
		if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
			t.Fatalf("audit line %q: %v", logs.String(), err)
		}
		if line.Caller.ARN != "arn:aws:sts::123456789012:assumed-role/shop-backend/i-0123456789abcdef0" ||
			line.Caller.Account != "123456789012" || line.Caller.SourceIP != "203.0.113.10" ||
			line.Caller.RequestID != "aBcDeFgHiJkLmNo=" || line.Route != "status" || line.App != "demo" {
			t.Errorf("audit line %s", logs.String())
		}
	})
	t.Run("HEAD has no body", func(t *testing.T) {
		e := ev
		e.RequestContext.HTTP.Method = "HEAD"
		resp, _ := api.New(&stub{}, nil).Lambda(context.Background(), e)
		if resp.StatusCode != 200 || resp.Body != "" {
			t.Errorf("HEAD: status %d body %q", resp.StatusCode, resp.Body)
		}
	})
	t.Run("bad base64", func(t *testing.T) {
		e := ev
		e.IsBase64Encoded, e.Body = true, "%%%"
		resp, _ := api.New(&stub{}, nil).Lambda(context.Background(), e)
		if resp.StatusCode != 400 {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
	})
	t.Run("garbage payloads", func(t *testing.T) {
		for _, p := range []string{``, `null`, `"x"`, `[1]`, `{"version":"1.0"}`, `{"version":"2.0"}`} {
			r := invoke(t, api.New(&stub{}, nil), []byte(p))
			if r.Status != 400 || r.errorCode() != "malformed_event" {
				t.Errorf("%q: status %d code %q, want 400 malformed_event", p, r.Status, r.errorCode())
			}
		}
	})
}

// TestLogNeverHoldsAPathToken: a confused client that puts a token in the
// path must not get it into the audit log.
func TestLogNeverHoldsAPathToken(t *testing.T) {
	var logs bytes.Buffer
	srv := httptest.NewServer(api.New(&stub{}, slog.New(slog.NewJSONHandler(&logs, nil))))
	defer srv.Close()
	for _, p := range []string{"/v1/apps/" + liveToken, "/v1/apps/" + liveToken + "/refresh", "/v1/" + liveToken} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if strings.Contains(logs.String(), liveToken) {
		t.Errorf("the audit log holds a token from the path:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), `"path":"(rejected)"`); n != 3 {
		t.Errorf("%d rejected paths logged as such, want 3:\n%s", n, logs.String())
	}
}

// TestResponsesAreMeasured: every answer reaches the metrics, 500s too.
func TestResponsesAreMeasured(t *testing.T) {
	m := &statusSpy{}
	srv := httptest.NewServer(api.New(&stub{err: errors.New("boom")}, nil).WithMetrics(m))
	defer srv.Close()
	for _, p := range []string{"/v1/apps/demo", "/nope"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if fmt.Sprint(m.got) != "[status:500 :404]" {
		t.Errorf("recorded %v, want [status:500 :404]", m.got)
	}
}

type statusSpy struct {
	mu  sync.Mutex
	got []string
}

func (s *statusSpy) Response(route string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, fmt.Sprintf("%s:%d", route, status))
}

type deadlineSpy struct{ got *time.Time }

func (d deadlineSpy) Refresh(context.Context, string, string) (refresh.Result, error) {
	return refresh.Result{}, nil
}
func (d deadlineSpy) ForceRefresh(context.Context, string) (refresh.Result, error) {
	return refresh.Result{}, nil
}
func (d deadlineSpy) RefreshTicket(context.Context, string, registry.Ticket, string) (refresh.Result, error) {
	return refresh.Result{}, nil
}
func (d deadlineSpy) Status(ctx context.Context, _ string) (refresh.Status, error) {
	*d.got, _ = ctx.Deadline()
	return refresh.Status{App: "demo"}, nil
}

// TestTicketRoute: POST /v1/apps/{app}/tickets/{ticket}/refresh answers the
// ticket (never under access_token), takes stale_ticket only, and answers
// 404 for a ticket the app does not keep or that does not exist, without
// logging what the caller put in the ticket's place.
func TestTicketRoute(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		status                   int
		code, ticket             string
	}{
		{"the published ticket", "POST", "/v1/apps/demo/tickets/jsapi/refresh", "", 200, "", liveTicket},
		{"a claim against it", "POST", "/v1/apps/demo/tickets/jsapi/refresh", `{"stale_ticket":"` + liveTicket + `"}`, 200, "", newTicket},
		{"stale_token is the token route's", "POST", "/v1/apps/demo/tickets/jsapi/refresh", `{"stale_token":"x"}`, 400, "malformed_body", ""},
		{"a ticket the app does not keep", "POST", "/v1/apps/demo/tickets/wx_card/refresh", "", 404, "unknown_ticket", ""},
		{"no such ticket", "POST", "/v1/apps/demo/tickets/" + liveToken + "/refresh", "", 404, "unknown_ticket", ""},
		{"an unknown app", "POST", "/v1/apps/nobody/tickets/jsapi/refresh", "", 404, "unknown_app", ""},
		{"GET", "GET", "/v1/apps/demo/tickets/jsapi/refresh", "", 405, "method_not_allowed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			resp, raw := send(t, api.New(&stub{}, slog.New(slog.NewJSONHandler(&logs, nil))), tt.method, tt.path, tt.body)
			var body map[string]any
			_ = json.Unmarshal(raw, &body)
			e, _ := body["error"].(map[string]any)
			if resp.StatusCode != tt.status || fmt.Sprint(e["code"]) != map[bool]string{true: "<nil>", false: tt.code}[tt.code == ""] {
				t.Errorf("status %d, error %v; want %d %q", resp.StatusCode, e, tt.status, tt.code)
			}
			if tt.ticket != "" && (body["ticket"] != tt.ticket || body["access_token"] != nil || body["app"] != "demo") {
				t.Errorf("answer %v, want the ticket under \"ticket\", no access_token, app demo", body)
			}
			for _, secret := range []string{liveToken, liveTicket, newTicket} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("the log holds a token or ticket: %s", logs.String())
				}
			}
		})
	}
}

// TestTicketRefusalCarriesTheTicket: a 429 on the ticket route hands back
// the current ticket under "ticket".
func TestTicketRefusalCarriesTheTicket(t *testing.T) {
	refused := &refresh.RefusedError{App: "demo#jsapi", Reason: refresh.ReasonMinInterval, RetryAfter: time.Second,
		Current: refresh.Result{App: "demo", Token: liveTicket, Version: 2, ExpiresAt: expires}}
	srv := httptest.NewServer(api.New(&stub{err: refused}, nil))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/apps/demo/tickets/jsapi/refresh", "application/json", strings.NewReader(`{"stale_ticket":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	e, _ := body["error"].(map[string]any)
	if resp.StatusCode != 429 || body["ticket"] != liveTicket || body["access_token"] != nil || body["app"] != "demo" ||
		!strings.Contains(fmt.Sprint(e["message"]), "current ticket") {
		t.Errorf("status %d, body %v; want 429 with the current ticket, app demo, a message about the ticket", resp.StatusCode, body)
	}
}
