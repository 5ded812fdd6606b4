// Package api is wxtoken's HTTP API (design.md §3.2): an http.Handler that
// serves the on-demand refresh, the operator's forced refresh and the status
// of an app, and an adapter that runs the same handler behind API Gateway's
// HTTP API (payload format 2.0) in Lambda.
//
//	POST /v1/apps/{app}/refresh                   {"stale_token": "..."} (optional)
//	POST /v1/apps/{app}/tickets/{ticket}/refresh  {"stale_ticket": "..."} (optional)
//	POST /v1/apps/{app}/force-refresh             no body, or {}
//	GET  /v1/apps/{app}                           status: metadata, never the token
//
// A token answer is {"app","access_token","version","expires_at","refreshed"};
// the ticket route answers the ticket under "ticket" instead of
// "access_token" (404 unknown_ticket for a ticket the app does not keep).
// Errors are {"error":{"code","message"}} with "wechat_errcode" when WeChat
// answered: 400 for a malformed, oversized or unknown-field body or a bad app
// name, 404 for an unknown app or route, 405 for a wrong method, 429 when a
// budget or the minimum interval refuses the call (with Retry-After and the
// current token), 502 when WeChat refused, 503 when the refresh in progress
// did not finish in time, 500 otherwise, with no internals in the message.
// No response other than a token answer carries a token, and no log line
// does.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// MaxBodyBytes bounds a request body. A refresh body holds one token (WeChat
// documents at least 512 characters of room); 4 KiB leaves ample margin.
const MaxBodyBytes = 4 << 10

// maxTokenLen bounds stale_token.
const maxTokenLen = 2048

// Refresher is what the API needs of the refresher.
type Refresher interface {
	Refresh(ctx context.Context, app, stale string) (refresh.Result, error)
	ForceRefresh(ctx context.Context, app string) (refresh.Result, error)
	RefreshTicket(ctx context.Context, app string, ticket registry.Ticket, stale string) (refresh.Result, error)
	Status(ctx context.Context, app string) (refresh.Status, error)
}

// Metrics records the API's answers; metrics.EMF implements it.
type Metrics interface {
	Response(route string, status int)
}

// Handler serves the API. Create it with New.
type Handler struct {
	refresher Refresher
	logger    *slog.Logger
	metrics   Metrics
	now       func() time.Time
}

// WithMetrics makes h record every answer's status in m and returns h.
func (h *Handler) WithMetrics(m Metrics) *Handler {
	h.metrics = m
	return h
}

// New returns a Handler answering from r and writing one audit line per
// request to logger (nil discards them).
func New(r Refresher, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{refresher: r, logger: logger, now: time.Now}
}

// Caller is the identity behind a request, for the audit log. In Lambda it
// comes from API Gateway's IAM authorizer; locally only SourceIP is known.
type Caller struct {
	ARN       string // the IAM principal (user or assumed role)
	AccountID string
	SourceIP  string
	UserAgent string
	RequestID string // API Gateway's request id
}

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the Caller in ctx, if any.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// route is a parsed request path.
type route struct {
	app    string
	action string // actionRefresh, actionForceRefresh, actionTicketRefresh or "" (status)
	ticket string // the ticket of actionTicketRefresh, as the caller wrote it
}

// The routes' actions, as they are logged and measured.
const (
	actionRefresh       = "refresh"
	actionForceRefresh  = "force-refresh"
	actionTicketRefresh = "ticket-refresh"
)

// knownTicket reports whether s names a ticket wxtoken keeps (any app's).
func knownTicket(s string) bool {
	_, ok := registry.ParseTicket(s)
	return ok
}

// parse maps an escaped path to a route; ok is false for a path that is no
// route. Segments are unescaped one by one, so an escaped "/" stays inside
// its segment (and makes an invalid app name) instead of splitting it.
func parse(escaped string) (route, bool) {
	rest, found := strings.CutPrefix(escaped, "/v1/apps/")
	if !found {
		return route{}, false
	}
	parts := strings.Split(rest, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return route{}, false
		}
		parts[i] = u
	}
	switch {
	case len(parts) == 1 && parts[0] != "":
		return route{app: parts[0]}, true
	case len(parts) == 2 && parts[0] != "" && (parts[1] == actionRefresh || parts[1] == actionForceRefresh):
		return route{app: parts[0], action: parts[1]}, true
	case len(parts) == 4 && parts[0] != "" && parts[1] == "tickets" && parts[2] != "" && parts[3] == "refresh":
		return route{app: parts[0], action: actionTicketRefresh, ticket: parts[2]}, true
	}
	return route{}, false
}

// apiError is an error answer, chosen once, at the edge.
type apiError struct {
	status     int
	code       string
	message    string
	errcode    int
	retryAfter time.Duration
	current    *refresh.Result // the token (or ticket) to keep using (429)
	cause      error           // logged, never sent
}

// ofTicket words an error answer of the ticket route: what to keep using
// is the current ticket.
func (a *apiError) ofTicket() {
	if a != nil {
		a.message = strings.ReplaceAll(a.message, "the current token", "the current ticket")
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	started := h.now()
	caller, ok := CallerFrom(req.Context())
	if !ok {
		caller = Caller{SourceIP: req.RemoteAddr, UserAgent: req.UserAgent()}
	}
	rt, matched := parse(req.URL.EscapedPath())
	var (
		res    refresh.Result
		status refresh.Status
		aerr   *apiError
		kind   string
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				aerr = &apiError{status: http.StatusInternalServerError, code: "internal", message: "internal error",
					cause: fmt.Errorf("panic of type %T", p)}
			}
		}()
		switch {
		case !matched:
			aerr = &apiError{status: http.StatusNotFound, code: "not_found", message: "no such route; see POST /v1/apps/{app}/refresh, POST /v1/apps/{app}/tickets/{ticket}/refresh, POST /v1/apps/{app}/force-refresh, GET /v1/apps/{app}"}
		case !methodAllowed(rt, req.Method):
			w.Header().Set("Allow", allowed(rt))
			// The method is not quoted: through Lambda it is any string the event holds.
			aerr = &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", message: "this method is not allowed here; use " + allowed(rt)}
		case !registry.ValidName(rt.app):
			aerr = &apiError{status: http.StatusBadRequest, code: "invalid_app_name", message: "app names are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"}
		case rt.action == actionTicketRefresh && !knownTicket(rt.ticket):
			// The segment is not quoted: a confused client could put a ticket there.
			aerr = &apiError{status: http.StatusNotFound, code: "unknown_ticket", message: "no such ticket: jsapi, wx_card or agent_config"}
		case rt.action == actionTicketRefresh:
			kind = actionTicketRefresh
			var stale string
			if stale, aerr = decodeStale(w, req, "stale_ticket"); aerr == nil {
				res, aerr = h.call(req.Context(), func(ctx context.Context) (refresh.Result, error) {
					return h.refresher.RefreshTicket(ctx, rt.app, registry.Ticket(rt.ticket), stale)
				})
				aerr.ofTicket()
			}
		case rt.action == actionRefresh:
			kind = actionRefresh
			var stale string
			if stale, aerr = decodeStale(w, req, "stale_token"); aerr == nil {
				res, aerr = h.call(req.Context(), func(ctx context.Context) (refresh.Result, error) {
					return h.refresher.Refresh(ctx, rt.app, stale)
				})
			}
		case rt.action == actionForceRefresh:
			kind = actionForceRefresh
			if aerr = decodeEmpty(w, req); aerr == nil {
				res, aerr = h.call(req.Context(), func(ctx context.Context) (refresh.Result, error) {
					return h.refresher.ForceRefresh(ctx, rt.app)
				})
			}
		default:
			kind = "status"
			var err error
			if status, err = h.refresher.Status(req.Context(), rt.app); err != nil {
				aerr = classify(err)
			}
		}
	}()

	code := http.StatusOK
	isTicket := kind == actionTicketRefresh
	switch {
	case aerr != nil:
		code = aerr.status
		writeError(w, aerr, isTicket)
	case kind == "status":
		writeJSON(w, code, statusBody(status, h.now()))
	default:
		writeJSON(w, code, tokenBody(res, isTicket))
	}

	// The path and app name are logged only once validated: a confused
	// client could put a token in the path.
	path, app := "(rejected)", "(invalid)"
	switch {
	case !matched:
		app = ""
	case !registry.ValidName(rt.app):
	case rt.action == actionTicketRefresh && !knownTicket(rt.ticket):
		// The app is valid; the ticket segment is not logged.
		app = rt.app
	default:
		path, app = req.URL.Path, rt.app
	}
	attrs := []any{
		"event", "request", "method", bounded(req.Method), "path", path, "route", kind, "app", app, "status", code,
		"duration_ms", h.now().Sub(started).Milliseconds(),
		slog.Group("caller", "arn", caller.ARN, "account", caller.AccountID, "source_ip", caller.SourceIP,
			"user_agent", bounded(caller.UserAgent), "request_id", caller.RequestID),
	}
	if aerr == nil && kind != "status" {
		attrs = append(attrs, "version", res.Version, "fingerprint", wechat.Fingerprint(res.Token), "refreshed", res.Refreshed)
	}
	level := slog.LevelInfo
	if aerr != nil {
		attrs = append(attrs, "error_code", aerr.code)
		if aerr.errcode != 0 {
			attrs = append(attrs, "wechat_errcode", aerr.errcode)
		}
		if aerr.cause != nil {
			attrs = append(attrs, "error", aerr.cause.Error())
		}
		switch {
		case aerr.status >= 500:
			level = slog.LevelError
		case aerr.status == http.StatusTooManyRequests:
			level = slog.LevelWarn
		}
	}
	h.logger.Log(req.Context(), level, "request", attrs...)
	if h.metrics != nil {
		h.metrics.Response(kind, code)
	}
}

// bounded cuts a caller-supplied string for the log.
func bounded(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}

func methodAllowed(rt route, m string) bool {
	if rt.action == "" {
		return m == http.MethodGet || m == http.MethodHead
	}
	return m == http.MethodPost
}

func allowed(rt route) string {
	if rt.action == "" {
		return "GET, HEAD"
	}
	return "POST"
}

// call runs a refresh and maps its error.
func (h *Handler) call(ctx context.Context, f func(context.Context) (refresh.Result, error)) (refresh.Result, *apiError) {
	res, err := f(ctx)
	if err != nil {
		return refresh.Result{}, classify(err)
	}
	return res, nil
}

// readBody reads the request body up to MaxBodyBytes.
func readBody(w http.ResponseWriter, req *http.Request) ([]byte, *apiError) {
	if req.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &apiError{status: http.StatusBadRequest, code: "body_too_large", message: fmt.Sprintf("request body is over %d bytes", MaxBodyBytes)}
	}
	if err != nil {
		return nil, &apiError{status: http.StatusBadRequest, code: "unreadable_body", message: "the request body could not be read", cause: err}
	}
	return body, nil
}

// object decodes body as one JSON object whose keys are among allowed
// (exactly, case-sensitively, each at most once) and whose values are
// strings, and returns them. Nothing may follow the object.
func object(body []byte, allowed ...string) (map[string]string, *apiError) {
	bad := func(msg string) (map[string]string, *apiError) {
		return nil, &apiError{status: http.StatusBadRequest, code: "malformed_body", message: msg}
	}
	fields := `this route takes no fields`
	if len(allowed) > 0 {
		fields = `allowed: "` + strings.Join(allowed, `", "`) + `"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return bad("the body must be a JSON object: " + describe(err))
	}
	out := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad("the body must be a JSON object: " + describe(err))
		}
		key, _ := tok.(string)
		if !slices.Contains(allowed, key) {
			// The name is not echoed: a confused client could send a token as a key.
			return bad("an unknown field (" + fields + ")")
		}
		if _, dup := out[key]; dup {
			return bad("field " + strconv.Quote(key) + " appears twice")
		}
		var v *string
		if err := dec.Decode(&v); err != nil || v == nil {
			return bad("field " + strconv.Quote(key) + " must be a string")
		}
		out[key] = *v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return bad("the body must be a JSON object: " + describe(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("the body must hold one JSON object and nothing after it")
	}
	return out, nil
}

// describe explains a decoding error without echoing the body (which may
// hold a token).
func describe(err error) string {
	var syn *json.SyntaxError
	switch {
	case err == nil:
		return "found another JSON value"
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected end of the body"
	}
	return "invalid JSON"
}

// isBlank reports whether body is empty or JSON whitespace only; other
// white space (U+00A0, U+2028...) is no JSON and no empty body either.
func isBlank(body []byte) bool { return len(bytes.Trim(body, " \t\r\n")) == 0 }

// decodeStale reads a refresh body: empty, or {field: "..."} (stale_token,
// or stale_ticket on the ticket route).
func decodeStale(w http.ResponseWriter, req *http.Request, field string) (string, *apiError) {
	body, aerr := readBody(w, req)
	if aerr != nil || isBlank(body) {
		return "", aerr
	}
	in, aerr := object(body, field)
	if aerr != nil {
		return "", aerr
	}
	stale := in[field]
	if len(stale) > maxTokenLen {
		return "", &apiError{status: http.StatusBadRequest, code: "malformed_body", message: fmt.Sprintf("%s is over %d characters", field, maxTokenLen)}
	}
	return stale, nil
}

// decodeEmpty accepts an empty body or {}.
func decodeEmpty(w http.ResponseWriter, req *http.Request) *apiError {
	body, aerr := readBody(w, req)
	if aerr != nil || isBlank(body) {
		return aerr
	}
	_, aerr = object(body)
	return aerr
}

// classify chooses the answer to an error of the refresher: 404 for an
// unknown app, 429 with the current token for a refusal, and otherwise what
// the refresh policy decides for the error's class (refresh.Decide).
func classify(err error) *apiError {
	var refused *refresh.RefusedError
	switch {
	case errors.Is(err, refresh.ErrUnknownApp):
		return &apiError{status: http.StatusNotFound, code: "unknown_app", message: "no such app is registered (or it is disabled)"}
	case errors.Is(err, refresh.ErrUnknownTicket):
		return &apiError{status: http.StatusNotFound, code: "unknown_ticket", message: "the app does not keep this ticket (wxtoken apps set NAME --tickets ...)"}
	case errors.As(err, &refused):
		a := &apiError{status: http.StatusTooManyRequests, code: "refresh_refused", errcode: refused.ErrCode, retryAfter: refused.RetryAfter, cause: err}
		switch refused.Reason {
		case refresh.ReasonDailyBudget:
			a.message = "the app's daily budget of WeChat token calls is used up; keep using the current token"
		case refresh.ReasonMinInterval:
			a.message = "an on-demand refresh happened moments ago; keep using the current token"
		case refresh.ReasonBlocked:
			if refused.Class == refresh.ClassInvalid {
				a.message = "the registration is rejected (another registration of the account keeps this ticket), so calls are paused until a person fixes it; keep using the current token"
				break
			}
			a.message = "WeChat refused recently, so calls are paused; keep using the current token"
		default:
			a.message = "WeChat refused recently, so calls are paused; keep using the current token"
		}
		if refused.Current.Token != "" {
			cur := refused.Current
			a.current = &cur
		}
		return a
	}
	d := refresh.Decide(err)
	a := &apiError{status: d.HTTPStatus, code: d.Code, message: d.Message, retryAfter: d.RetryAfter, errcode: refresh.ErrCode(err), cause: err}
	if a.errcode != 0 {
		a.message += fmt.Sprintf(" (WeChat errcode %d)", a.errcode)
	}
	return a
}

// tokenJSON is the 200 answer and, with Error, the 429 one: the token, or
// on the ticket route the ticket.
type tokenJSON struct {
	Error       *errorJSON `json:"error,omitempty"`
	App         string     `json:"app,omitempty"`
	AccessToken string     `json:"access_token,omitempty"`
	Ticket      string     `json:"ticket,omitempty"`
	Version     int64      `json:"version,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at"`
	// RotatesAt is when the schedule plans to replace the value: a
	// consumer need not read SSM again before it unless WeChat rejects
	// the value (rotation.Meta).
	RotatesAt *time.Time `json:"rotates_at,omitempty"`
	Refreshed bool       `json:"refreshed"`
}

type errorJSON struct {
	Code          string `json:"code"`
	Message       string `json:"message"`
	WeChatErrcode int    `json:"wechat_errcode,omitempty"`
}

func tokenBody(r refresh.Result, ticket bool) tokenJSON {
	t := tokenJSON{App: r.App, AccessToken: r.Token, Version: r.Version, Refreshed: r.Refreshed}
	if ticket {
		t.AccessToken, t.Ticket = "", r.Token
	}
	if !r.ExpiresAt.IsZero() {
		at := r.ExpiresAt.UTC()
		t.ExpiresAt = &at
	}
	if !r.RotatesAt.IsZero() {
		at := r.RotatesAt.UTC()
		t.RotatesAt = &at
	}
	return t
}

func writeError(w http.ResponseWriter, a *apiError, ticket bool) {
	if a.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(a.retryAfter.Seconds())), 10))
	}
	e := &errorJSON{Code: a.code, Message: a.message, WeChatErrcode: a.errcode}
	if a.current != nil {
		t := tokenBody(*a.current, ticket)
		t.Error = e
		writeJSON(w, a.status, t)
		return
	}
	writeJSON(w, a.status, struct {
		Error *errorJSON `json:"error"`
	}{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// statusJSON is the status answer: the app, its token's metadata and its
// tickets'.
type statusJSON struct {
	App      string `json:"app"`
	AppID    string `json:"appid"`
	Kind     string `json:"kind"`
	Mode     string `json:"mode"`
	Disabled bool   `json:"disabled"`
	credentialJSON
	CallsDay       string     `json:"calls_day"`
	LastOnDemandAt *time.Time `json:"last_on_demand_at,omitempty"`
	DriftCount     int        `json:"drift_count"`
	LastDriftAt    *time.Time `json:"last_drift_at,omitempty"`
	// Tickets are the app's tickets' metadata (never a ticket).
	Tickets []ticketStatusJSON `json:"tickets,omitempty"`
}

// credentialJSON is what the status answer says of a token or a ticket.
type credentialJSON struct {
	Version     int64  `json:"version"`
	Published   bool   `json:"published"`
	Generation  int64  `json:"generation"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// IssuedAt is when WeChat issued the committed credential.
	IssuedAt  *time.Time `json:"issued_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	// ExpiresIn is the remaining life in seconds at the time of the answer.
	ExpiresIn      *int64     `json:"expires_in"`
	CallsToday     int        `json:"calls_today"`
	DailyBudget    int        `json:"daily_budget"`
	LastError      *lastError `json:"last_error"`
	BlockedUntil   *time.Time `json:"blocked_until,omitempty"`
	RefreshingTill *time.Time `json:"refresh_in_progress_until,omitempty"`
}

// ticketStatusJSON is one ticket's part of the status answer.
type ticketStatusJSON struct {
	Ticket string `json:"ticket"`
	credentialJSON
}

type lastError struct {
	Message       string     `json:"message"`
	WeChatErrcode int        `json:"wechat_errcode,omitempty"`
	Class         string     `json:"class,omitempty"`
	At            *time.Time `json:"at"`
}

func ts(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func statusBody(s refresh.Status, now time.Time) statusJSON {
	out := statusJSON{
		App: s.App, AppID: s.AppID, Kind: s.Kind, Mode: s.Mode, Disabled: s.Disabled,
		credentialJSON: credentialOf(s, now),
		CallsDay:       s.CallsDay, LastOnDemandAt: ts(s.LastOnDemandAt),
		DriftCount: s.DriftCount, LastDriftAt: ts(s.LastDriftAt),
	}
	for _, t := range s.Tickets {
		out.Tickets = append(out.Tickets, ticketStatusJSON{Ticket: string(t.Ticket), credentialJSON: credentialOf(t, now)})
	}
	return out
}

// credentialOf is a token's or a ticket's metadata at now.
func credentialOf(s refresh.Status, now time.Time) credentialJSON {
	return credentialJSON{
		Version: s.Version, Published: s.Published, Generation: s.Generation, Fingerprint: s.Fingerprint,
		IssuedAt: ts(s.FetchedAt), ExpiresAt: ts(s.ExpiresAt), ExpiresIn: expiresIn(s, now),
		CallsToday: s.CallsToday, DailyBudget: s.DailyBudget, LastError: lastErrorOf(s),
		BlockedUntil: ts(s.BlockedUntil), RefreshingTill: ts(s.LeaseUntil),
	}
}

// expiresIn is the credential's remaining life in seconds at now (nil when
// unknown).
func expiresIn(s refresh.Status, now time.Time) *int64 {
	if s.ExpiresAt.IsZero() {
		return nil
	}
	left := int64(s.ExpiresAt.Sub(now).Seconds())
	return &left
}

// lastErrorOf is the credential's last error (nil when none).
func lastErrorOf(s refresh.Status) *lastError {
	if s.LastError == "" {
		return nil
	}
	return &lastError{Message: s.LastError, WeChatErrcode: s.LastErrCode, Class: s.ErrorClass, At: ts(s.LastErrorAt)}
}
