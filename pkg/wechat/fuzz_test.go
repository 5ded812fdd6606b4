package wechat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// The fuzz target's fixtures. fuzzMarker may be planted in a body: only
// WeChat's errmsg may reach an error, so an error quotes the marker only
// when the errmsg holds it. fuzzSecretSlot in a body stands for the secret,
// so that bodies can quote it wherever they like.
const (
	fuzzMarker        = "Zq8MARKERxK2v7Lw0Pn4Ty6Rb3Hs"
	fuzzSecretSlot    = "{secret}"
	fuzzDefaultSecret = "FuzzS3cr3tAppSecret0123456789abc"
	fuzzBodyLimit     = 4096
)

var (
	fuzzNow          = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	fuzzStatuses     = []int{200, 200, 200, 200, 204, 302, 400, 403, 404, 429, 500, 502, 503}
	fuzzContentTypes = []string{"application/json", "application/json; charset=utf-8", "text/plain", "",
		"text/html; charset=utf-8", "TEXT/HTML", "application/octet-stream"}
	// A secret is 16 to 64 letters and digits, two letters at least, so
	// that no number in a body and no fixed text in an error can match it.
	fuzzSecretRE  = regexp.MustCompile(`^[0-9A-Za-z]{16,64}$`)
	fuzzLettersRE = regexp.MustCompile(`[A-Za-z].*[A-Za-z]`)
)

// fuzzReply is what the fuzz server answers, set before each call.
type fuzzReply struct {
	mu          sync.Mutex
	status      int
	contentType string
	body        []byte
}

func (f *fuzzReply) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	status, ct, body := f.status, f.contentType, f.body
	f.mu.Unlock()
	if ct == "" {
		w.Header()["Content-Type"] = nil // no sniffing: no content type at all
	} else {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// FuzzTokenResponse serves arbitrary answers (body, HTTP status, content
// type) to the classic, stable (normal and forced) and WeCom token calls and
// checks each result against judgeReply, an oracle that reads the body with
// encoding/json's generic decoding rather than the client's: a token or an
// error, never both; a token is the body's access_token with a positive
// expires_in, expiring after now; a *wechat.Error carries the body's errcode;
// no error holds the secret, and none quotes the body but for WeChat's
// errmsg.
func FuzzTokenResponse(f *testing.F) {
	f.Add([]byte(`{"access_token":"ACCESS_TOKEN_0123456789","expires_in":7200}`), uint16(0), uint8(0), uint8(0), fuzzDefaultSecret)
	f.Add([]byte(`{"errcode":40125,"errmsg":"invalid appsecret {secret} rid: 6564ab12-1a2b3c4d-5e6f7a8b"}`), uint16(0), uint8(0), uint8(1), fuzzDefaultSecret)
	f.Add([]byte(`{"errcode":0,"errmsg":"ok","access_token":"TOKEN","expires_in":"7200"}`), uint16(56), uint8(0), uint8(0), "0123456789abcdefABCDEF")
	f.Add([]byte(`{"errcode":-1,"errmsg":"system error"}`), uint16(35), uint8(0), uint8(2), fuzzDefaultSecret)
	f.Add([]byte(`{"access_token":"x","expires_in":1e3}`), uint16(0), uint8(0), uint8(0), fuzzDefaultSecret)
	f.Add([]byte(`<html><body>502 Bad Gateway</body></html>`), uint16(7), uint8(0), uint8(4), fuzzDefaultSecret)
	f.Add([]byte(`{"access_token":"T","expires_in":7200,"ACCESS_TOKEN":"U"}`), uint16(0), uint8(0), uint8(0), fuzzDefaultSecret)
	f.Add([]byte(``), uint16(0), uint8(10), uint8(0), fuzzDefaultSecret)

	reply := &fuzzReply{}
	srv := httptest.NewServer(reply)
	f.Cleanup(srv.Close)
	c := &wechat.Client{
		HTTPClient:    srv.Client(),
		BaseURLs:      []string{srv.URL},
		WeComBaseURLs: []string{srv.URL},
		MaxAttempts:   1, // one exchange per call: no retry, no backoff sleep
		MaxBodyBytes:  fuzzBodyLimit,
		Now:           func() time.Time { return fuzzNow },
	}
	calls := []struct {
		op   string
		call func(ctx context.Context, secret string) (wechat.Token, error)
	}{
		{wechat.OpToken, func(ctx context.Context, s string) (wechat.Token, error) { return c.Token(ctx, "wxfuzz0123456789", s) }},
		{wechat.OpStableToken, func(ctx context.Context, s string) (wechat.Token, error) {
			return c.StableToken(ctx, "wxfuzz0123456789", s, false)
		}},
		{wechat.OpStableToken, func(ctx context.Context, s string) (wechat.Token, error) {
			return c.StableToken(ctx, "wxfuzz0123456789", s, true)
		}},
		{wechat.OpWeComToken, func(ctx context.Context, s string) (wechat.Token, error) {
			return c.WeComToken(ctx, "wwfuzz0123456789", s)
		}},
	}

	f.Fuzz(func(t *testing.T, body []byte, at uint16, statusSel, ctSel uint8, secret string) {
		if !fuzzSecretRE.MatchString(secret) || !fuzzLettersRE.MatchString(secret) {
			secret = fuzzDefaultSecret
		}
		if at > 0 {
			i := int(at-1) % (len(body) + 1)
			body = slices.Concat(body[:i:i], []byte(fuzzMarker), body[i:])
		}
		body = bytes.ReplaceAll(body, []byte(fuzzSecretSlot), []byte(secret))
		status := fuzzStatuses[int(statusSel)%len(fuzzStatuses)]
		ct := fuzzContentTypes[int(ctSel)%len(fuzzContentTypes)]
		reply.mu.Lock()
		reply.status, reply.contentType, reply.body = status, ct, body
		reply.mu.Unlock()
		want := judgeReply(body, status, ct)

		for _, call := range calls {
			tok, err := call.call(context.Background(), secret)
			checkReply(t, call.op, tok, err, secret, want)
		}
	})
}

// checkReply checks one call's result against want. Its messages show
// fingerprints, never a token, a secret or a body.
func checkReply(t *testing.T, op string, tok wechat.Token, err error, secret string, want verdict) {
	t.Helper()
	if err == nil {
		switch {
		case tok.AccessToken == "":
			t.Errorf("%s: no error and an empty token", op)
		case !tok.ExpiresAt.After(fuzzNow) || !tok.FetchedAt.Equal(fuzzNow) || tok.ExpiresAt != tok.FetchedAt.Add(tok.ExpiresIn):
			t.Errorf("%s: token fetched at %v, lasting %v, expiring at %v; now is %v", op, tok.FetchedAt, tok.ExpiresIn, tok.ExpiresAt, fuzzNow)
		}
		if want.kind != verdictToken && want.kind != verdictAmbiguous {
			t.Errorf("%s: got token %s, want %s", op, tok.Fingerprint(), want)
		}
		if want.kind == verdictToken && (tok.AccessToken != want.token || tok.ExpiresIn != want.expiresIn) {
			t.Errorf("%s: got token %s lasting %v, want %s", op, tok.Fingerprint(), tok.ExpiresIn, want)
		}
		return
	}

	msg := err.Error()
	if tok != (wechat.Token{}) {
		t.Errorf("%s: both an error and token %s", op, tok.Fingerprint())
	}
	if strings.Contains(msg, secret) {
		t.Errorf("%s: the error holds the secret (%s)", op, wechat.Fingerprint(secret))
	}
	var (
		we *wechat.Error
		se *wechat.StatusError
		re *wechat.ResponseError
	)
	isWeChat := errors.As(err, &we)
	if strings.Contains(msg, fuzzMarker) && (!isWeChat || want.kind == verdictErrCode && !strings.Contains(want.errmsg, fuzzMarker)) {
		t.Errorf("%s: the error (%T) quotes the body beyond WeChat's errmsg", op, err)
	}
	switch want.kind {
	case verdictToken:
		t.Errorf("%s: error %T, want %s", op, err, want)
	case verdictStatus:
		if !errors.As(err, &se) || se.StatusCode != want.code || se.Op != op {
			t.Errorf("%s: error %T, want %s", op, err, want)
		}
	case verdictResponse:
		if !errors.As(err, &re) || re.Op != op {
			t.Errorf("%s: error %T, want %s", op, err, want)
		}
	case verdictErrCode:
		if !isWeChat || we.Code != want.code || we.Op != op {
			t.Errorf("%s: error %T (%v), want %s", op, err, isWeChat && we.Code == want.code, want)
		}
	case verdictAmbiguous:
		if !isWeChat && !errors.As(err, &re) {
			t.Errorf("%s: error %T, want a *wechat.Error or *wechat.ResponseError", op, err)
		}
	}
}

// verdict is judgeReply's idea of a call's result.
type verdict struct {
	kind      int
	code      int           // the errcode, or the HTTP status
	errmsg    string        // WeChat's errmsg, for verdictErrCode
	token     string        // the token, for verdictToken
	expiresIn time.Duration // its lifetime
}

const (
	verdictToken     = iota
	verdictStatus    // a *StatusError with code
	verdictResponse  // a *ResponseError
	verdictErrCode   // an *Error with code
	verdictAmbiguous // a field appears twice or in another case: any answer but a *StatusError
)

// String describes v without its token.
func (v verdict) String() string {
	switch v.kind {
	case verdictToken:
		return "token " + wechat.Fingerprint(v.token) + " lasting " + v.expiresIn.String()
	case verdictStatus:
		return "*wechat.StatusError " + strconv.Itoa(v.code)
	case verdictResponse:
		return "*wechat.ResponseError"
	case verdictErrCode:
		return "*wechat.Error errcode " + strconv.Itoa(v.code)
	}
	return "ambiguous fields"
}

// answerFields are the fields the client reads.
var answerFields = []string{"errcode", "errmsg", "access_token", "expires_in", "ip_list"}

// judgeReply is the oracle: what a token call must return for an answer.
// It reads the body as a generic map, so a field the client's struct
// matches in another case, or one that appears twice, makes the verdict
// ambiguous rather than guessed.
func judgeReply(body []byte, status int, ct string) verdict {
	bad := verdict{kind: verdictResponse}
	if status != http.StatusOK {
		return verdict{kind: verdictStatus, code: status}
	}
	if len(body) > fuzzBodyLimit {
		return bad
	}
	// White space around the answer, Unicode's included, is ignored.
	body = bytes.TrimSpace(body)
	if bytes.HasPrefix(body, []byte("<")) || strings.HasPrefix(strings.ToLower(ct), "text/html") {
		return bad
	}
	if !json.Valid(body) || !bytes.HasPrefix(body, []byte("{")) {
		return bad
	}
	seen := map[string]bool{}
	for _, k := range topKeys(body) {
		for _, name := range answerFields {
			if strings.EqualFold(k, name) && (k != name || seen[name]) {
				return verdict{kind: verdictAmbiguous}
			}
		}
		seen[k] = true
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return bad
	}

	var code int64
	switch v := m["errcode"].(type) {
	case nil:
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return bad
		}
		code = n
	default:
		return bad
	}
	errmsg, ok := m["errmsg"].(string)
	if !ok && m["errmsg"] != nil {
		return bad
	}
	switch v := m["ip_list"].(type) {
	case nil:
	case []any:
		for _, e := range v {
			if _, ok := e.(string); !ok && e != nil {
				return bad
			}
		}
	default:
		return bad
	}
	token, ok := m["access_token"].(string)
	if !ok && m["access_token"] != nil {
		return bad
	}
	var expires string
	switch v := m["expires_in"].(type) {
	case nil:
	case json.Number:
		expires = string(v)
	case string:
		if !isNumber(v) {
			return bad
		}
		expires = v
	default:
		return bad
	}

	if code != 0 {
		return verdict{kind: verdictErrCode, code: int(code), errmsg: errmsg}
	}
	if token == "" || len(token) > wechat.MaxTokenLength || strings.ContainsFunc(token, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return bad
	}
	secs, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || secs <= 0 || time.Duration(secs)*time.Second > wechat.MaxExpiresIn {
		return bad
	}
	return verdict{kind: verdictToken, token: token, expiresIn: time.Duration(secs) * time.Second}
}

// isNumber reports whether s is a JSON number (RFC 8259 §6).
func isNumber(s string) bool { return jsonNumberRE.MatchString(s) }

var jsonNumberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// topKeys returns the member names of the JSON object b, duplicates
// included.
func topKeys(b []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		return nil
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return keys
		}
		k, _ := tok.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return keys
		}
	}
	return keys
}
