package awstest

import (
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Proxy is a fault-injecting reverse proxy in front of an engine of the test
// bed (or any HTTP server): it forwards every call to the target unless a
// Fault selects it, in which case it answers the way the real service would
// under that fault — a throttling error in the service's own wire format, a
// 5xx, a connection closed without an answer — or forwards the call and then
// loses the answer. Point an SDK client at it by setting BaseEndpoint to URL.
//
// Calls are told apart by operation: the X-Amz-Target header of AWS's JSON
// protocols ("AmazonSSM.PutParameter", "DynamoDB_20120810.UpdateItem"), or
// the URL path for other servers. A Proxy is safe for concurrent use; its
// decisions are deterministic (no randomness), so a test's counts repeat.
type Proxy struct {
	// URL is the proxy's base URL, http://127.0.0.1:port.
	URL string

	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu        sync.Mutex
	rules     []*rule
	injected  map[string]int
	forwarded map[string]int
}

// FaultKind is how a Proxy answers a call a Fault selects.
type FaultKind int

// The kinds of fault.
const (
	// Throttle answers HTTP 400 with the service's throttling error (Code,
	// default ThrottlingException) in its wire format: JSON 1.0 with the
	// com.amazonaws.dynamodb.v20120810# prefix for DynamoDB, JSON 1.1
	// ({"__type":"ThrottlingException","message":"Rate exceeded"}) for SSM
	// and other JSON 1.1 services. The call never reaches the engine.
	Throttle FaultKind = iota + 1
	// ServerError answers Status (default 500) with the service's
	// InternalServerError (500) or ServiceUnavailable (other statuses)
	// body. The call never reaches the engine.
	ServerError
	// Drop closes the connection without an answer; the call never reaches
	// the engine.
	Drop
	// LoseAnswer forwards the call, so the engine carries it out, then
	// closes the connection without passing the answer on: the caller
	// cannot tell a write that happened from one that did not.
	LoseAnswer
)

// String returns the kind's name.
func (k FaultKind) String() string {
	switch k {
	case Throttle:
		return "throttle"
	case ServerError:
		return "server_error"
	case Drop:
		return "drop"
	case LoseAnswer:
		return "lose_answer"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Fault selects calls and says how to answer them. Faults are checked in the
// order they were injected; the first that selects a call applies.
type Fault struct {
	// Op selects calls by their X-Amz-Target header, exactly
	// ("AmazonSSM.PutParameter"); empty selects every operation.
	Op string
	// Path selects calls by URL path, exactly ("/cgi-bin/token"); empty
	// selects every path.
	Path string
	// Kind is the answer. It is required.
	Kind FaultKind
	// Code is the error code of a Throttle: ThrottlingException when
	// empty; ProvisionedThroughputExceededException for a DynamoDB table
	// over its provisioned capacity.
	Code string
	// Status is the HTTP status of a ServerError (default 500).
	Status int
	// Skip lets the first Skip selected calls through untouched, to aim at
	// one step of a sequence (the second UpdateItem of a refresh).
	Skip int
	// Times applies the fault to this many calls after Skip and then
	// removes it; 0 means until Clear.
	Times int
	// Fraction applies the fault to this share of the selected calls
	// (0 < Fraction < 1), spread evenly and deterministically: the k-th
	// selected call is affected when ⌊k·Fraction⌋ exceeds
	// ⌊(k-1)·Fraction⌋ (so 2/3 affects calls 2, 3, 5, 6, ...). Zero
	// affects every selected call.
	Fraction float64
}

type rule struct {
	Fault
	seen  int // selected calls after Skip, for Fraction
	fired int
	skip  int
}

// NewProxy starts a proxy in front of target (a base URL such as the value of
// AWS_ENDPOINT_URL_DYNAMODB) and closes it when the test ends. It fails tb
// when target is not an absolute URL.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		tb.Fatalf("awstest: proxy target %q is not an absolute URL", target)
		return nil
	}
	p := &Proxy{injected: map[string]int{}, forwarded: map[string]int{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			// Keep the Host the client signed, as a transparent hop would.
			r.Out.Host = r.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The engine itself failed: pass that on as a dropped
			// connection rather than inventing an answer.
			abort(w)
		},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.srv.URL
	tb.Cleanup(p.Close)
	return p
}

// Close stops the proxy; NewProxy arranges for it at the end of the test.
func (p *Proxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
}

// Inject adds a fault.
func (p *Proxy) Inject(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &rule{Fault: f, skip: f.Skip})
}

// Clear removes every fault; calls are forwarded untouched from then on.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Injected returns how many calls of operation op (its X-Amz-Target, or its
// path when it has none) were answered by a fault; op "" counts every call.
func (p *Proxy) Injected(op string) int { return p.count(p.injected, op) }

// Forwarded returns how many calls of op were passed to the target (LoseAnswer
// calls included); op "" counts every call.
func (p *Proxy) Forwarded(op string) int { return p.count(p.forwarded, op) }

func (p *Proxy) count(m map[string]int, op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if op != "" {
		return m[op]
	}
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// opOf names a call for selection and counters.
func opOf(r *http.Request) string {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		return t
	}
	return r.URL.Path
}

// take returns the fault that applies to the call, if any, and counts the
// call as injected or forwarded.
func (p *Proxy) take(r *http.Request) *Fault {
	op := opOf(r)
	target := r.Header.Get("X-Amz-Target")
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.rules {
		if f.Op != "" && f.Op != target || f.Path != "" && f.Path != r.URL.Path {
			continue
		}
		if f.skip > 0 {
			f.skip--
			continue
		}
		f.seen++
		if f.Fraction > 0 && f.Fraction < 1 && spread(f.seen, f.Fraction) == spread(f.seen-1, f.Fraction) {
			continue
		}
		f.fired++
		if f.Times > 0 && f.fired >= f.Times {
			p.rules = append(p.rules[:i:i], p.rules[i+1:]...)
		}
		fired := f.Fault
		if fired.Kind == LoseAnswer {
			p.forwarded[op]++
		}
		p.injected[op]++
		return &fired
	}
	p.forwarded[op]++
	return nil
}

// spread is ⌊k·f⌋, nudged so that 3·(2/3) counts as 2.
func spread(k int, f float64) int { return int(float64(k)*f + 1e-9) }

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	f := p.take(r)
	if f == nil {
		p.rp.ServeHTTP(w, r)
		return
	}
	switch f.Kind {
	case Throttle:
		code := f.Code
		if code == "" {
			code = "ThrottlingException"
		}
		msg := "Rate exceeded"
		if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_") {
			msg = "Throughput exceeds the current capacity of your table or index."
		}
		writeError(w, r, http.StatusBadRequest, code, msg)
	case ServerError:
		status := f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		code, msg := "ServiceUnavailable", "Service is unavailable."
		if status == http.StatusInternalServerError {
			code, msg = "InternalServerError", "Internal server error"
		}
		writeError(w, r, status, code, msg)
	case LoseAnswer:
		// The engine carries the call out; its answer goes nowhere.
		p.rp.ServeHTTP(httptest.NewRecorder(), r)
		abort(w)
	default: // Drop, and any kind this version does not know
		abort(w)
	}
}

// writeError answers an AWS JSON-protocol error the way the service does.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	dynamo := strings.HasPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_")
	ctype, typ := "application/x-amz-json-1.1", code
	if dynamo {
		ctype, typ = "application/x-amz-json-1.0", "com.amazonaws.dynamodb.v20120810#"+code
	}
	body := fmt.Sprintf(`{"__type":%q,"message":%q}`, typ, msg)
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Amzn-Requestid", "awstest-proxy-fault")
	if dynamo {
		// DynamoDB signs every answer with a CRC32 the SDK verifies.
		w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// abort closes the client's connection without an answer.
func abort(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}
