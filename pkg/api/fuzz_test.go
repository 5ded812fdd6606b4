package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wxtoken/wxtoken/pkg/api"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// The fuzz targets' fixtures. fuzzMarker is planted in every input: no
// answer may quote it, since caller data can be a token. It has upper-case
// letters, so it can never be a valid app name that an answer names.
const (
	fuzzMarker    = "Zq8MARKERxK2v7Lw0Pn4Ty6Rb3Hs"
	fuzzToken     = "FUZZ_PUBLISHED_TOKEN_7f3a9c"
	fuzzMaxStale  = 2048 // api's maxTokenLen
	fuzzMaxDepth  = 10000
	fuzzNoCall    = "(none)"
	fuzzApp       = "demo"
	fuzzEventPath = "/v1/apps/" + fuzzApp + "/"
)

// fuzzStatuses are the statuses the package comment documents.
var fuzzStatuses = []int{200, 400, 404, 405, 429, 500, 502, 503}

// fuzzRefresher is a Refresher that knows one app and remembers the last
// call it served.
type fuzzRefresher struct {
	mu   sync.Mutex
	call string
}

func (r *fuzzRefresher) serve(call, app string) (refresh.Result, error) {
	r.mu.Lock()
	r.call = call
	r.mu.Unlock()
	if app != fuzzApp {
		return refresh.Result{}, fmt.Errorf("%w: %s", refresh.ErrUnknownApp, app)
	}
	return refresh.Result{App: app, Token: fuzzToken, Version: 7, ExpiresAt: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}, nil
}

func (r *fuzzRefresher) Refresh(_ context.Context, app, stale string) (refresh.Result, error) {
	return r.serve("refresh "+app+" stale="+stale, app)
}

func (r *fuzzRefresher) ForceRefresh(_ context.Context, app string) (refresh.Result, error) {
	return r.serve("force "+app, app)
}

func (r *fuzzRefresher) RefreshTicket(_ context.Context, app string, ticket registry.Ticket, stale string) (refresh.Result, error) {
	return r.serve("ticket "+app+" "+string(ticket)+" stale="+stale, app)
}

func (r *fuzzRefresher) Status(_ context.Context, app string) (refresh.Status, error) {
	if _, err := r.serve("status "+app, app); err != nil {
		return refresh.Status{}, err
	}
	return refresh.Status{App: app, Version: 7, Published: true, Fingerprint: wechat.Fingerprint(fuzzToken)}, nil
}

func (r *fuzzRefresher) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.call == "" {
		return fuzzNoCall
	}
	return r.call
}

// plant inserts fuzzMarker into b at a position chosen by at, or nowhere
// when at is 0.
func plant(b []byte, at uint16) []byte {
	if at == 0 {
		return b
	}
	i := int(at-1) % (len(b) + 1)
	return slices.Concat(b[:i:i], []byte(fuzzMarker), b[i:])
}

// FuzzRequestBody sends arbitrary bodies to the refresh and force-refresh
// routes, over plain HTTP and through the Lambda adapter (raw or base64),
// and checks every answer against judgeBody, an oracle written apart from
// the handler's decoder: a body is accepted iff it is empty (or JSON
// whitespace) or one JSON object whose members are exactly allowed fields,
// each once, each a string, within the size limits. Whatever the body, the
// answer is documented JSON, never quotes the body, and no log line does.
func FuzzRequestBody(f *testing.F) {
	f.Add([]byte(`{"stale_token":""}`), false, uint16(17))
	f.Add([]byte(`{"stale_token":"x"}`), true, uint16(1))
	f.Add([]byte(`{"stale_token":null}`), false, uint16(0))
	f.Add([]byte(`{"stale\u005ftoken":"\ud83d\ude00\ud800"}`), false, uint16(24))
	f.Add([]byte(`{"stale_token":"a","stale_token":"b"}`), false, uint16(18))
	f.Add([]byte("\xef\xbb\xbf{}"), false, uint16(0))
	f.Add([]byte("\xc2\xa0"), false, uint16(0))
	f.Add([]byte(" {}\r\n"), true, uint16(0))
	f.Fuzz(func(t *testing.T, body []byte, force bool, at uint16) {
		body = plant(body, at)
		route, fields := "refresh", []string{"stale_token"}
		if force {
			route, fields = "force-refresh", nil
		}
		stale, wantCode := judgeBody(body, fields...)
		want := answer{status: http.StatusOK, code: wantCode, call: "refresh " + fuzzApp + " stale=" + stale}
		if force {
			want.call = "force " + fuzzApp
		}
		if wantCode != "" {
			want.status, want.call = http.StatusBadRequest, fuzzNoCall
		}

		var logs bytes.Buffer
		r := &fuzzRefresher{}
		h := api.New(r, slog.New(slog.NewJSONHandler(&logs, nil)))
		req := httptest.NewRequest(http.MethodPost, fuzzEventPath+route, bytes.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		checkAnswer(t, "HTTP", w.Code, w.Header(), w.Body.Bytes(), r.last(), want)
		if strings.Contains(logs.String(), fuzzMarker) {
			t.Errorf("HTTP: the audit log quotes the request body")
		}

		ev := events.APIGatewayV2HTTPRequest{
			Version:  "2.0",
			RouteKey: "POST /v1/apps/{app}/" + route,
			RawPath:  fuzzEventPath + route,
			Headers:  map[string]string{"content-type": "application/json"},
			RequestContext: events.APIGatewayV2HTTPRequestContext{
				HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: http.MethodPost, Path: fuzzEventPath + route},
			},
			PathParameters: map[string]string{"app": fuzzApp},
			Body:           string(body),
		}
		if !utf8.Valid(body) { // a JSON string cannot carry it as it is
			ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
		}
		payload, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		r = &fuzzRefresher{}
		out := invokeFuzz(t, api.New(r, nil), payload)
		if bytes.Contains(out.raw, []byte(fuzzMarker)) {
			t.Errorf("Lambda: the answer quotes the request body")
		}
		checkAnswer(t, "Lambda", out.StatusCode, out.header(), []byte(out.Body), r.last(), want)
	})
}

// FuzzInvoke hands arbitrary payloads to the Lambda entry point. Whatever
// the payload, Invoke returns an HTTP API answer and no error, with a
// documented status and a JSON body (none for HEAD) that never quotes the
// payload; an error answer holds {"error":{"code","message"}} and no token;
// a payload that is not a JSON object is a 400 malformed_event.
func FuzzInvoke(f *testing.F) {
	f.Add([]byte(`{"version":"2.0","routeKey":"GET /v1/apps/{app}","rawPath":"/v1/apps/demo","requestContext":{"http":{"method":"GET"}},"pathParameters":{"app":"demo"}}`), uint16(0))
	f.Add([]byte(`{"version":"2.0","rawPath":"/v1/apps/demo/refresh","requestContext":{"http":{"method":"POST"}},"body":"e30=","isBase64Encoded":true}`), uint16(0))
	f.Add([]byte(`{"version":"2.0","requestContext":{"http":{"method":"PUT","path":"/v1/apps/demo"}}}`), uint16(54))
	f.Add([]byte(`{"version":"2.0","requestContext":{"http":{"method":"GET","path":"/v1/apps/de"}}}`), uint16(78))
	f.Add([]byte(`[]`), uint16(2))
	f.Add([]byte(``), uint16(0))
	f.Fuzz(func(t *testing.T, payload []byte, at uint16) {
		payload = plant(payload, at)
		r := &fuzzRefresher{}
		out := invokeFuzz(t, api.New(r, nil), payload)
		if bytes.Contains(out.raw, []byte(fuzzMarker)) {
			t.Errorf("the answer quotes the payload (status %d)", out.StatusCode)
		}
		if !slices.Contains(fuzzStatuses, out.StatusCode) {
			t.Errorf("status %d is not a documented one", out.StatusCode)
		}
		h := out.header()
		if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("status %d: Content-Type %q, Cache-Control %q", out.StatusCode, h.Get("Content-Type"), h.Get("Cache-Control"))
		}
		code, msg, token, ok := readAnswer([]byte(out.Body))
		if v, isObject := parseJSON(payload); !isObject || v.kind != '{' {
			if out.StatusCode != http.StatusBadRequest || code != "malformed_event" || r.last() != fuzzNoCall {
				t.Errorf("a payload that is no JSON object: status %d code %q, refresher call %v; want 400 malformed_event and none",
					out.StatusCode, code, r.last() != fuzzNoCall)
			}
		}
		if out.Body == "" {
			// Only a HEAD answer has no body.
			var ev events.APIGatewayV2HTTPRequest
			if json.Unmarshal(payload, &ev) != nil || ev.RequestContext.HTTP.Method != http.MethodHead {
				t.Errorf("status %d: an empty body, not for HEAD", out.StatusCode)
			}
			return
		}
		if !ok {
			t.Errorf("status %d: the body (%d bytes) is not a JSON object", out.StatusCode, len(out.Body))
		}
		if out.StatusCode != http.StatusOK && (code == "" || msg == "" || token != "" || strings.Contains(out.Body, fuzzToken)) {
			t.Errorf("status %d: error answer with code %q, a message of %d bytes, a token: %v", out.StatusCode, code, len(msg), token != "")
		}
	})
}

// answer is what a request should get.
type answer struct {
	status int
	code   string // error code, "" for 200
	call   string // the refresher's call, fuzzNoCall for none
}

// checkAnswer compares an answer to want. Messages name no body or token:
// a failing input is in testdata/fuzz, and the call holds the stale token.
func checkAnswer(t *testing.T, surface string, status int, header http.Header, body []byte, call string, want answer) {
	t.Helper()
	code, msg, token, ok := readAnswer(body)
	switch {
	case !ok:
		t.Errorf("%s: status %d: the body (%d bytes) is not a JSON object", surface, status, len(body))
	case status != want.status || code != want.code:
		t.Errorf("%s: status %d code %q, want %d %q", surface, status, code, want.status, want.code)
	case status == http.StatusOK && token != fuzzToken:
		t.Errorf("%s: a 200 answer without the published token", surface)
	case status != http.StatusOK && (msg == "" || token != "" || bytes.Contains(body, []byte(fuzzToken))):
		t.Errorf("%s: status %d: error answer with a message of %d bytes, with a token: %v", surface, status, len(msg), token != "")
	}
	if call != want.call {
		t.Errorf("%s: refresher call %s, want %s", surface, redactCall(call), redactCall(want.call))
	}
	if bytes.Contains(body, []byte(fuzzMarker)) {
		t.Errorf("%s: status %d: the answer quotes the request body", surface, status)
	}
	if header.Get("Content-Type") != "application/json" || header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: Content-Type %q, Cache-Control %q", surface, header.Get("Content-Type"), header.Get("Cache-Control"))
	}
}

// redactCall shows a refresher call with its stale token's fingerprint.
func redactCall(call string) string {
	if head, stale, ok := strings.Cut(call, " stale="); ok {
		return head + " stale=fp:" + wechat.Fingerprint(stale)
	}
	return call
}

// readAnswer decodes an answer body: its error code and message, its token,
// and whether it is a JSON object.
func readAnswer(body []byte) (code, msg, token string, ok bool) {
	var a struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		AccessToken string `json:"access_token"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if !bytes.HasPrefix(body, []byte("{")) || dec.Decode(&a) != nil || dec.More() {
		return "", "", "", false
	}
	if a.Error != nil {
		code, msg = a.Error.Code, a.Error.Message
	}
	return code, msg, a.AccessToken, true
}

// lambdaAnswer is Invoke's answer, decoded, with its raw bytes.
type lambdaAnswer struct {
	events.APIGatewayV2HTTPResponse
	raw []byte
}

func (a lambdaAnswer) header() http.Header {
	h := http.Header{}
	for k, v := range a.Headers {
		h.Set(k, v)
	}
	return h
}

func invokeFuzz(t *testing.T, h *api.Handler, payload []byte) lambdaAnswer {
	t.Helper()
	out, err := h.Invoke(context.Background(), payload)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	a := lambdaAnswer{raw: out}
	if err := json.Unmarshal(out, &a.APIGatewayV2HTTPResponse); err != nil {
		t.Fatalf("Invoke's answer (%d bytes) is not an HTTP API response: %v", len(out), err)
	}
	return a
}

// judgeBody is the oracle for a request body on a route taking fields: the
// error code it deserves ("" to accept it) and the stale token it carries.
func judgeBody(body []byte, fields ...string) (stale, code string) {
	if len(body) > api.MaxBodyBytes {
		return "", "body_too_large"
	}
	if len(bytes.Trim(body, jsonSpace)) == 0 {
		return "", ""
	}
	v, ok := parseJSON(body)
	if !ok || v.kind != '{' {
		return "", "malformed_body"
	}
	seen := map[string]bool{}
	for _, m := range v.members {
		if !slices.Contains(fields, m.key) || seen[m.key] || m.val.kind != '"' {
			return "", "malformed_body"
		}
		seen[m.key] = true
		stale = m.val.str
	}
	if len(stale) > fuzzMaxStale {
		return "", "malformed_body"
	}
	return stale, ""
}

// jsonSpace is the whitespace RFC 8259 allows around tokens.
const jsonSpace = " \t\r\n"

// jsonValue is a value found by parseJSON.
type jsonValue struct {
	kind    byte   // '{' object, '[' array, '"' string, '0' number, 'l' true, false or null
	str     string // a string's text, decoded as encoding/json decodes it
	members []jsonMember
}

type jsonMember struct {
	key string
	val jsonValue
}

// parseJSON parses b as exactly one RFC 8259 JSON text. It shares no code
// with encoding/json, so that the handler's decoder can be checked against
// it; like encoding/json it replaces invalid UTF-8 and lone surrogates with
// U+FFFD and refuses nesting deeper than 10000.
func parseJSON(b []byte) (jsonValue, bool) {
	p := &jsonParser{s: b}
	v, ok := p.value(1)
	p.space()
	return v, ok && p.i == len(p.s)
}

type jsonParser struct {
	s []byte
	i int
}

func (p *jsonParser) space() {
	for p.i < len(p.s) && strings.IndexByte(jsonSpace, p.s[p.i]) >= 0 {
		p.i++
	}
}

// at reports whether the next byte is c.
func (p *jsonParser) at(c byte) bool { return p.i < len(p.s) && p.s[p.i] == c }

func (p *jsonParser) digits() int {
	n := 0
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		p.i, n = p.i+1, n+1
	}
	return n
}

func (p *jsonParser) value(depth int) (jsonValue, bool) {
	p.space()
	if p.i >= len(p.s) || depth > fuzzMaxDepth {
		return jsonValue{}, false
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		p.i++
		p.space()
		if p.at(']') {
			p.i++
			return jsonValue{kind: '['}, true
		}
		for {
			if _, ok := p.value(depth + 1); !ok {
				return jsonValue{}, false
			}
			p.space()
			switch {
			case p.at(','):
				p.i++
			case p.at(']'):
				p.i++
				return jsonValue{kind: '['}, true
			default:
				return jsonValue{}, false
			}
		}
	case c == '"':
		s, ok := p.string()
		return jsonValue{kind: '"', str: s}, ok
	case c == '-' || '0' <= c && c <= '9':
		if p.at('-') {
			p.i++
		}
		if p.at('0') {
			p.i++
		} else if p.digits() == 0 {
			return jsonValue{}, false
		}
		if p.at('.') {
			p.i++
			if p.digits() == 0 {
				return jsonValue{}, false
			}
		}
		if p.at('e') || p.at('E') {
			p.i++
			if p.at('+') || p.at('-') {
				p.i++
			}
			if p.digits() == 0 {
				return jsonValue{}, false
			}
		}
		return jsonValue{kind: '0'}, true
	}
	for _, lit := range []string{"true", "false", "null"} {
		if bytes.HasPrefix(p.s[p.i:], []byte(lit)) {
			p.i += len(lit)
			return jsonValue{kind: 'l', str: lit}, true
		}
	}
	return jsonValue{}, false
}

func (p *jsonParser) object(depth int) (jsonValue, bool) {
	p.i++ // {
	v := jsonValue{kind: '{'}
	p.space()
	if p.at('}') {
		p.i++
		return v, true
	}
	for {
		p.space()
		if !p.at('"') {
			return jsonValue{}, false
		}
		key, ok := p.string()
		if !ok {
			return jsonValue{}, false
		}
		p.space()
		if !p.at(':') {
			return jsonValue{}, false
		}
		p.i++
		val, ok := p.value(depth + 1)
		if !ok {
			return jsonValue{}, false
		}
		v.members = append(v.members, jsonMember{key, val})
		p.space()
		switch {
		case p.at(','):
			p.i++
		case p.at('}'):
			p.i++
			return v, true
		default:
			return jsonValue{}, false
		}
	}
}

func (p *jsonParser) string() (string, bool) {
	p.i++ // "
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), true
		case c < 0x20:
			return "", false
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return "", false
			}
			e := p.s[p.i+1]
			p.i += 2
			if i := strings.IndexByte(`"\/bfnrt`, e); i >= 0 {
				b.WriteByte("\"\\/\b\f\n\r\t"[i])
				continue
			}
			if e != 'u' {
				return "", false
			}
			r, ok := p.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				// A pair only when a low surrogate's escape follows;
				// otherwise U+FFFD, and what follows is read anew.
				hi, save := r, p.i
				r = unicode.ReplacementChar
				if p.at('\\') && p.i+1 < len(p.s) && p.s[p.i+1] == 'u' {
					p.i += 2
					if lo, ok := p.hex4(); ok && utf16.DecodeRune(hi, lo) != unicode.ReplacementChar {
						r = utf16.DecodeRune(hi, lo)
					} else {
						p.i = save
					}
				}
			}
			b.WriteRune(r)
		default:
			r, n := utf8.DecodeRune(p.s[p.i:])
			b.WriteRune(r) // U+FFFD for an invalid byte, as encoding/json writes
			p.i += n
		}
	}
	return "", false
}

// hex4 reads the four hex digits of a \u escape.
func (p *jsonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	var r rune
	for _, c := range p.s[p.i : p.i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}
