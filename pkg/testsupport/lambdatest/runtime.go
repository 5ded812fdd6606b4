// Package lambdatest runs Lambda function binaries in tests, under a minimal
// stand-in of the documented Lambda Runtime API
// (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html), in the
// style of net/http/httptest: start a Runtime, point a `bootstrap` process at
// it through AWS_LAMBDA_RUNTIME_API (see Runtime.Env), and Invoke it.
//
// It serves the routes a function uses: GET /2018-06-01/runtime/invocation/next,
// POST .../invocation/{id}/response, POST .../invocation/{id}/error and
// POST /2018-06-01/runtime/init/error.
package lambdatest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const maxPayload = 6 << 20 // Lambda's synchronous response limit

// Result is a function's answer to one invocation: either the response
// payload or the error it reported.
type Result struct {
	// Payload is the response body the function posted.
	Payload []byte
	// Error is set when the function posted to the error route instead.
	Error *FunctionError
}

// FunctionError is the error document a runtime posts for a failed invocation
// or a failed initialization.
type FunctionError struct {
	Message string `json:"errorMessage"`
	Type    string `json:"errorType"`
}

// Error implements error.
func (e *FunctionError) Error() string { return e.Type + ": " + e.Message }

type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
	done     chan Result
}

// Runtime is a Lambda Runtime API server for one function process at a time.
type Runtime struct {
	srv     *httptest.Server
	pending chan *invocation
	seq     atomic.Uint64
	closed  chan struct{}
	once    sync.Once
	waiting atomic.Int32

	mu        sync.Mutex
	inflight  map[string]*invocation
	initError *FunctionError
}

// NewRuntime starts a Runtime on a loopback port. Close it when done.
func NewRuntime() *Runtime {
	r := &Runtime{pending: make(chan *invocation), closed: make(chan struct{}), inflight: map[string]*invocation{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", r.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", r.respond)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", r.fail)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", r.initFail)
	r.srv = httptest.NewServer(mux)
	return r
}

// Env returns the AWS_LAMBDA_RUNTIME_API setting for the function's process.
func (r *Runtime) Env() string {
	return "AWS_LAMBDA_RUNTIME_API=" + strings.TrimPrefix(r.srv.URL, "http://")
}

// Close stops the server; invocations still waiting get ctx's error. A
// function blocked in its long poll on .../invocation/next is answered with
// 503 first: httptest.Server.Close waits for every active request, so without
// that Close would wait forever for a process that is itself waiting.
func (r *Runtime) Close() {
	r.once.Do(func() { close(r.closed) })
	r.srv.Close()
}

// InitError returns the error the function reported from its initialization,
// or nil.
func (r *Runtime) InitError() *FunctionError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.initError
}

// Invoke hands payload to the next GET .../invocation/next and waits for the
// function's answer. The invocation's deadline is ctx's deadline, or 30 s from
// now without one. It returns ctx's error when the function does not ask for
// or does not answer the invocation in time (for example because it exited).
func (r *Runtime) Invoke(ctx context.Context, payload []byte) (Result, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	inv := &invocation{
		id:       fmt.Sprintf("req-%06d", r.seq.Add(1)),
		payload:  payload,
		deadline: deadline,
		done:     make(chan Result, 1),
	}
	select {
	case r.pending <- inv:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("lambdatest: function did not ask for the next invocation: %w", ctx.Err())
	}
	select {
	case res := <-inv.done:
		return res, nil
	case <-ctx.Done():
		return Result{}, fmt.Errorf("lambdatest: function did not answer invocation %s: %w", inv.id, ctx.Err())
	}
}

// Waiting reports how many function processes are waiting in their long
// poll on invocation/next (ready for an invocation).
func (r *Runtime) Waiting() int { return int(r.waiting.Load()) }

func (r *Runtime) next(w http.ResponseWriter, req *http.Request) {
	r.waiting.Add(1)
	defer r.waiting.Add(-1)
	select {
	case inv := <-r.pending:
		r.mu.Lock()
		r.inflight[inv.id] = inv
		r.mu.Unlock()
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:lambdatest")
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0")
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(inv.payload)
	case <-r.closed:
		http.Error(w, `{"errorMessage":"runtime closed","errorType":"Runtime.Closed"}`, http.StatusServiceUnavailable)
	case <-req.Context().Done():
	}
}

func (r *Runtime) take(w http.ResponseWriter, req *http.Request) (*invocation, []byte, bool) {
	id := req.PathValue("id")
	r.mu.Lock()
	inv, ok := r.inflight[id]
	delete(r.inflight, id)
	r.mu.Unlock()
	if !ok {
		http.Error(w, `{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}`, http.StatusBadRequest)
		return nil, nil, false
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxPayload+1))
	if err != nil || len(body) > maxPayload {
		http.Error(w, `{"errorMessage":"payload too large or unreadable","errorType":"RequestTooLarge"}`, http.StatusRequestEntityTooLarge)
		inv.done <- Result{Error: &FunctionError{Type: "Runtime.ResponseTooLarge", Message: "response over 6 MB or unreadable"}}
		return nil, nil, false
	}
	return inv, body, true
}

func (r *Runtime) respond(w http.ResponseWriter, req *http.Request) {
	inv, body, ok := r.take(w, req)
	if !ok {
		return
	}
	w.WriteHeader(http.StatusAccepted)
	inv.done <- Result{Payload: body}
}

func (r *Runtime) fail(w http.ResponseWriter, req *http.Request) {
	inv, body, ok := r.take(w, req)
	if !ok {
		return
	}
	w.WriteHeader(http.StatusAccepted)
	inv.done <- Result{Error: decodeError(body)}
}

func (r *Runtime) initFail(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, maxPayload))
	r.mu.Lock()
	r.initError = decodeError(body)
	r.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func decodeError(body []byte) *FunctionError {
	var fe FunctionError
	if err := json.Unmarshal(body, &fe); err != nil || (fe.Message == "" && fe.Type == "") {
		return &FunctionError{Type: "Unknown", Message: string(body)}
	}
	return &fe
}
