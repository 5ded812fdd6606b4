package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// Headroom is cut from an invocation's deadline before serving it, so that
// a refresh cut short still releases its lease and the answer still reaches
// API Gateway before Lambda stops the function.
const Headroom = 2 * time.Second

// Invoke implements aws-lambda-go's lambda.Handler, so that lambda.Start(h)
// hands it the raw event: an event that is not an API Gateway HTTP API
// request (payload format 2.0) gets a 400 answer rather than an invocation
// error. The error is non-nil only if the answer cannot be encoded.
func (h *Handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	var ev events.APIGatewayV2HTTPRequest
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(payload, &ev); err != nil || ev.Version != "2.0" || ev.RequestContext.HTTP.Method == "" {
		w := &recorder{header: http.Header{}}
		writeError(w, &apiError{status: http.StatusBadRequest, code: "malformed_event",
			message: "the event is not an API Gateway HTTP API request (payload format 2.0)"}, false)
		h.logger.WarnContext(ctx, "request", "event", "request", "status", http.StatusBadRequest, "error_code", "malformed_event")
		resp = w.response(false)
	} else {
		resp, _ = h.Lambda(ctx, ev)
	}
	return json.Marshal(resp)
}

// Lambda serves one API Gateway HTTP API request (payload format 2.0) with
// the same handler that serves plain HTTP. The caller's IAM identity from
// the authorizer context goes to the audit log. It never returns an error:
// every problem is an HTTP answer, so a malformed request cannot crash or
// fail the invocation.
func (h *Handler) Lambda(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	rc := ev.RequestContext
	// Only the IAM authorizer identifies the caller (rc.AccountID is the
	// API owner's account, not the caller's).
	caller := Caller{SourceIP: rc.HTTP.SourceIP, UserAgent: rc.HTTP.UserAgent, RequestID: rc.RequestID}
	if iam := rc.Authorizer; iam != nil && iam.IAM != nil {
		caller.ARN, caller.AccountID = iam.IAM.UserARN, iam.IAM.AccountID
	}
	ctx = WithCaller(ctx, caller)
	if dl, ok := ctx.Deadline(); ok {
		// Answer (and release a lease) before Lambda stops the process.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-Headroom))
		defer cancel()
	}

	w := &recorder{header: http.Header{}}
	req, ok := toRequest(ctx, ev)
	if !ok {
		writeError(w, &apiError{status: http.StatusBadRequest, code: "malformed_body", message: "the body is not valid base64"}, false)
		h.logger.InfoContext(ctx, "request", "event", "request", "status", http.StatusBadRequest, "error_code", "malformed_body",
			slog.Group("caller", "arn", caller.ARN, "account", caller.AccountID, "source_ip", caller.SourceIP, "request_id", caller.RequestID))
		return w.response(false), nil
	}
	h.ServeHTTP(w, req)
	return w.response(req.Method == http.MethodHead), nil
}

// toRequest builds the http.Request API Gateway received.
func toRequest(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (*http.Request, bool) {
	method := ev.RequestContext.HTTP.Method
	if method == "" {
		method = http.MethodGet
	}
	path := routePath(ev)
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, false
		}
		body = b
	}
	u := &url.URL{Path: path, RawQuery: ev.RawQueryString}
	if p, err := url.PathUnescape(path); err == nil {
		u.Path, u.RawPath = p, path
	}
	req := (&http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{},
		Body:          http.NoBody,
		ContentLength: int64(len(body)),
		Host:          ev.RequestContext.DomainName,
		RemoteAddr:    ev.RequestContext.HTTP.SourceIP,
		RequestURI:    path,
	}).WithContext(ctx)
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	for k, v := range ev.Headers {
		req.Header.Set(k, v) // payload 2.0 joins repeated headers with commas
	}
	return req, true
}

// routePath is the path to serve: API Gateway's matched route with the app
// it extracted, so that the handler sees what IAM authorized; the raw path
// (less a named stage) when the event names no route.
func routePath(ev events.APIGatewayV2HTTPRequest) string {
	if _, route, ok := strings.Cut(ev.RouteKey, " "); ok && strings.HasPrefix(route, "/") {
		for _, param := range []string{"app", "ticket"} {
			if v, ok := ev.PathParameters[param]; ok && strings.Contains(route, "{"+param+"}") {
				// A value holding a "/" cannot match a route: escape it
				// so that it reaches the handler as one (invalid) segment.
				route = strings.Replace(route, "{"+param+"}", url.PathEscape(v), 1)
			}
		}
		if !strings.Contains(route, "{") {
			return route
		}
	}
	path := ev.RawPath
	if path == "" {
		path = ev.RequestContext.HTTP.Path
	}
	if st := ev.RequestContext.Stage; st != "" && st != "$default" && strings.HasPrefix(path, "/"+st+"/") {
		path = strings.TrimPrefix(path, "/"+st)
	}
	return path
}

// recorder is the http.ResponseWriter of a Lambda invocation.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

func (r *recorder) response(head bool) events.APIGatewayV2HTTPResponse {
	status := r.status
	if status == 0 {
		status = http.StatusOK
	}
	headers := make(map[string]string, len(r.header))
	for k, v := range r.header {
		headers[k] = strings.Join(v, ", ")
	}
	body := r.body.String()
	if head {
		body = ""
	}
	return events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: headers, Body: body}
}
