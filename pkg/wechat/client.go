// Package wechat is wxtoken's client for WeChat's credential APIs: the
// classic access token (GET /cgi-bin/token), the stable access token
// (POST /cgi-bin/stable_token, normal and force_refresh modes), WeCom's
// gettoken, the tickets issued against a token (an Official Account's
// jsapi_ticket and card api_ticket, WeCom's jsapi and agent_config
// tickets; ticket.go), clear_quota/v2, and a cheap business call that tells
// whether a token is still accepted (GET /cgi-bin/get_api_domain_ip).
//
// Every answer is validated before it becomes a Token: an errcode becomes an
// *Error, anything else unusable a *ResponseError, a failed exchange a
// *TransportError or *StatusError; Classify and the Is* helpers say what to do
// about each. Retryable failures are retried with jittered exponential backoff
// within the caller's context, failing over across WeChat's API domains.
//
// No error, log line or String form produced here contains an AppSecret or
// an access token: requests carry them in the query or body, so transport
// errors are rebuilt without the URL, and WeChat's messages are scrubbed.
package wechat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The operations, as they appear in errors, logs and metrics.
const (
	OpToken       = "token"             // GET /cgi-bin/token
	OpStableToken = "stable_token"      // POST /cgi-bin/stable_token
	OpWeComToken  = "gettoken"          // GET qyapi /cgi-bin/gettoken
	OpCheckToken  = "get_api_domain_ip" // GET /cgi-bin/get_api_domain_ip
	OpClearQuota  = "clear_quota"       // POST /cgi-bin/clear_quota/v2
)

// DefaultBaseURLs are WeChat's API domains in fail-over order: the main
// domain, its disaster-recovery twin, then the Shanghai, Shenzhen and Hong
// Kong domains.
var DefaultBaseURLs = []string{
	"https://api.weixin.qq.com",
	"https://api2.weixin.qq.com",
	"https://sh.api.weixin.qq.com",
	"https://sz.api.weixin.qq.com",
	"https://hk.api.weixin.qq.com",
}

// DefaultWeComBaseURLs are WeCom's API domains.
var DefaultWeComBaseURLs = []string{"https://qyapi.weixin.qq.com"}

// Defaults for the Client's zero fields.
const (
	DefaultMaxAttempts  = 4
	DefaultBaseDelay    = 200 * time.Millisecond
	DefaultMaxDelay     = 5 * time.Second
	DefaultMaxBodyBytes = 64 << 10
	DefaultHTTPTimeout  = 10 * time.Second

	// MaxTokenLength bounds an accepted token. WeChat asks integrators to
	// reserve 512 characters; anything beyond a few times that is garbage
	// (and would not fit a standard SSM parameter).
	MaxTokenLength = 2048
	// MaxExpiresIn bounds an accepted expires_in. WeChat issues tokens for
	// at most 7200 s today; a day leaves room for a change without letting
	// a corrupt answer postpone refreshes indefinitely.
	MaxExpiresIn = 24 * time.Hour
)

// Token is an access token and its lifetime as WeChat reported it.
//
// Its String, GoString and LogValue forms show a fingerprint, never the
// token, so a Token can be logged or printed safely.
type Token struct {
	// AccessToken is the credential itself.
	AccessToken string
	// ExpiresIn is expires_in as WeChat answered it: the full lifetime for
	// a new token, the remaining lifetime for a stable token in normal mode.
	ExpiresIn time.Duration
	// FetchedAt is when the request that obtained the token was sent.
	FetchedAt time.Time
	// ExpiresAt is FetchedAt + ExpiresIn. Counting from the request rather
	// than the answer means it is never later than WeChat's own expiry.
	ExpiresAt time.Time
}

// Fingerprint returns a short hash of the token, for logs and status.
func (t Token) Fingerprint() string { return Fingerprint(t.AccessToken) }

// String implements fmt.Stringer without revealing the token.
func (t Token) String() string {
	return fmt.Sprintf("Token{fp=%s expires_at=%s}", t.Fingerprint(), t.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString implements fmt.GoStringer without revealing the token.
func (t Token) GoString() string { return "wechat." + t.String() }

// LogValue implements slog.LogValuer without revealing the token.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("fingerprint", t.Fingerprint()),
		slog.Time("expires_at", t.ExpiresAt),
	)
}

// Fingerprint returns the first 12 hex digits of the SHA-256 of token: enough
// to tell tokens apart in logs, useless for recovering one. An empty token has
// the fingerprint "-".
func Fingerprint(token string) string {
	if token == "" {
		return "-"
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// Client calls WeChat's credential APIs. The zero value is ready to use and
// talks to WeChat's real domains; a Client is safe for concurrent use.
type Client struct {
	// HTTPClient sends the requests. Nil means a client with a
	// DefaultHTTPTimeout timeout that does not follow redirects.
	HTTPClient *http.Client
	// BaseURLs are the API domains of Official Accounts and Mini Programs
	// in fail-over order (scheme and host, no trailing slash). Nil means
	// DefaultBaseURLs.
	BaseURLs []string
	// WeComBaseURLs are WeCom's API domains. Nil means DefaultWeComBaseURLs.
	WeComBaseURLs []string
	// MaxAttempts bounds the attempts per call, fail-over included. Zero
	// means DefaultMaxAttempts; 1 disables retries.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the backoff: before attempt n+1 the
	// client sleeps a random duration up to min(MaxDelay, BaseDelay·2^n).
	// Zero means DefaultBaseDelay and DefaultMaxDelay.
	BaseDelay, MaxDelay time.Duration
	// MaxBodyBytes bounds an accepted response body. Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Now is the clock used for FetchedAt and ExpiresAt. Nil means time.Now.
	Now func() time.Time
	// Logger receives one warning per retried attempt (operation, host,
	// attempt, class, errcode; never a URL, secret or token). Nil means
	// no logging.
	Logger *slog.Logger
}

var defaultHTTPClient = &http.Client{Timeout: DefaultHTTPTimeout, CheckRedirect: refuseRedirect}

// Token obtains a classic access token (GET /cgi-bin/token). Every call
// issues a new token, and WeChat invalidates the previous one five minutes
// later, so a call is retried only when it certainly did not reach WeChat,
// or WeChat answered -1 (a retry after a lost answer would issue a second
// token and end the first). It returns an *Error for a WeChat errcode and
// the errors described in the package comment otherwise.
func (c *Client) Token(ctx context.Context, appID, secret string) (Token, error) {
	q := url.Values{"grant_type": {"client_credential"}, "appid": {appID}, "secret": {secret}}
	return c.fetchToken(ctx, OpToken, c.baseURLs(), false, secret, func(base string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, base+"/cgi-bin/token?"+q.Encode(), nil)
	})
}

// StableToken obtains a stable access token (POST /cgi-bin/stable_token). In
// normal mode WeChat returns the current token with its remaining lifetime
// until the last five minutes, when it issues a new one; with forceRefresh it
// issues a new token at once and invalidates the old one (at most 20 times a
// day, 30 s apart). A forced call is retried only when it certainly did not
// reach WeChat, or WeChat answered -1. Errors as for Token.
func (c *Client) StableToken(ctx context.Context, appID, secret string, forceRefresh bool) (Token, error) {
	body, err := json.Marshal(struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}{"client_credential", appID, secret, forceRefresh})
	if err != nil {
		return Token{}, fmt.Errorf("wechat: %s: encode request: %w", OpStableToken, err)
	}
	return c.fetchToken(ctx, OpStableToken, c.baseURLs(), !forceRefresh, secret, func(base string) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/cgi-bin/stable_token", bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	})
}

// WeComToken obtains a WeCom access token (GET qyapi /cgi-bin/gettoken) for
// one application of a corporation. Errors as for Token.
func (c *Client) WeComToken(ctx context.Context, corpID, corpSecret string) (Token, error) {
	q := url.Values{"corpid": {corpID}, "corpsecret": {corpSecret}}
	return c.fetchToken(ctx, OpWeComToken, c.weComBaseURLs(), true, corpSecret, func(base string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, base+"/cgi-bin/gettoken?"+q.Encode(), nil)
	})
}

// CheckToken asks WeChat whether an Official Account or Mini Program token is
// currently accepted, with the cheap business call get_api_domain_ip. It
// returns nil when WeChat accepted the token, an *Error for which
// IsTokenInvalid is true when WeChat rejected it (40001 superseded, 40014
// not a token, 42001 expired), and another error when it could not tell.
func (c *Client) CheckToken(ctx context.Context, accessToken string) error {
	return c.checkToken(ctx, c.baseURLs(), accessToken)
}

// CheckWeComToken is CheckToken for a WeCom token, on WeCom's domains.
func (c *Client) CheckWeComToken(ctx context.Context, accessToken string) error {
	return c.checkToken(ctx, c.weComBaseURLs(), accessToken)
}

func (c *Client) checkToken(ctx context.Context, bases []string, accessToken string) error {
	q := url.Values{"access_token": {accessToken}}
	_, _, err := c.do(ctx, OpCheckToken, bases, true, accessToken, func(base string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, base+"/cgi-bin/get_api_domain_ip?"+q.Encode(), nil)
	})
	return err
}

// ClearQuota resets the daily API call counts of an Official Account or
// Mini Program with clear_quota/v2 (POST /cgi-bin/clear_quota/v2 with the
// appid and AppSecret: no token needed, for when the token API's quota is
// used up). WeChat allows 10 effective resets a month per account, shared
// with clear_quota and the MP console, and answers 48006 past them. Each
// effective call spends one, so a call is retried only when it certainly
// did not reach WeChat, or WeChat answered -1. The parameters go in the
// query string, as the SDKs send them (WeChat's pages disagree between
// query and body). Errors as for Token; the secret is in none.
func (c *Client) ClearQuota(ctx context.Context, appID, secret string) error {
	q := url.Values{"appid": {appID}, "appsecret": {secret}}
	_, _, err := c.do(ctx, OpClearQuota, c.baseURLs(), false, secret, func(base string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodPost, base+"/cgi-bin/clear_quota/v2?"+q.Encode(), nil)
	})
	return err
}

// fetchToken runs a credential call and validates the token it returns.
func (c *Client) fetchToken(ctx context.Context, op string, bases []string, idempotent bool, secret string, build func(base string) (*http.Request, error)) (Token, error) {
	return c.fetchCredential(ctx, op, fieldAccessToken, bases, idempotent, secret, build)
}

// credentialField is the JSON field an answer carries its credential in.
type credentialField string

// The credential fields.
const (
	fieldAccessToken credentialField = "access_token"
	fieldTicket      credentialField = "ticket"
)

// fetchCredential runs a call that answers a credential in field with its
// expires_in, and validates both.
func (c *Client) fetchCredential(ctx context.Context, op string, field credentialField, bases []string, idempotent bool, sensitive string, build func(base string) (*http.Request, error)) (Token, error) {
	ans, host, err := c.do(ctx, op, bases, idempotent, sensitive, build)
	if err != nil {
		return Token{}, err
	}
	bad := func(format string, args ...any) (Token, error) {
		return Token{}, &ResponseError{Op: op, Host: host, Reason: fmt.Sprintf(format, args...)}
	}
	tok := ans.AccessToken
	if field == fieldTicket {
		tok = ans.Ticket
	}
	switch {
	case tok == "":
		return bad("no %s", field)
	case len(tok) > MaxTokenLength:
		return bad("%s of %d bytes exceeds %d", field, len(tok), MaxTokenLength)
	case !printable(tok):
		return bad("%s contains characters WeChat does not issue", field)
	}
	if ans.ExpiresIn == "" {
		return bad("no expires_in")
	}
	secs, err := strconv.ParseInt(string(ans.ExpiresIn), 10, 64)
	if err != nil {
		return bad("expires_in %q is not an integer", ans.ExpiresIn)
	}
	if secs <= 0 {
		return bad("expires_in %d is not positive", secs)
	}
	life := time.Duration(secs) * time.Second
	if life > MaxExpiresIn {
		return bad("expires_in %d exceeds %d", secs, int64(MaxExpiresIn/time.Second))
	}
	return Token{AccessToken: tok, ExpiresIn: life, FetchedAt: ans.sentAt, ExpiresAt: ans.sentAt.Add(life)}, nil
}

// answer is the union of the JSON fields the calls use.
type answer struct {
	ErrCode     int         `json:"errcode"`
	ErrMsg      string      `json:"errmsg"`
	AccessToken string      `json:"access_token"`
	Ticket      string      `json:"ticket"`
	ExpiresIn   json.Number `json:"expires_in"`
	IPList      []string    `json:"ip_list"`

	sentAt time.Time
}

// do sends the request built by build, retrying and failing over, and
// returns the decoded answer with errcode 0 and the host that gave it.
// sensitive is scrubbed from every error message.
func (c *Client) do(ctx context.Context, op string, bases []string, idempotent bool, sensitive string, build func(base string) (*http.Request, error)) (answer, string, error) {
	attempts := c.MaxAttempts
	if attempts <= 0 {
		attempts = DefaultMaxAttempts
	}
	var lastErr error
	hostIdx := 0
	for n := 0; n < attempts; n++ {
		if n > 0 {
			if !c.sleep(ctx, n-1) {
				break
			}
		}
		base := strings.TrimRight(bases[hostIdx%len(bases)], "/")
		ans, err := c.attempt(ctx, op, base, sensitive, idempotent, build)
		if err == nil {
			return ans, hostOf(base), nil
		}
		lastErr = err
		if !retryable(err, idempotent) || ctx.Err() != nil {
			return answer{}, hostOf(base), err
		}
		if n+1 < attempts {
			c.logRetry(ctx, op, base, n+1, err)
		}
		hostIdx++ // fail over to the next domain
	}
	return answer{}, "", lastErr
}

// retryable decides whether another attempt may help. A call that is not safe
// to repeat is retried only when it cannot have been processed.
func retryable(err error, idempotent bool) bool {
	if Classify(err) != ClassRetryable {
		return false
	}
	if idempotent {
		return true
	}
	var te *TransportError
	if errors.As(err, &te) {
		return !te.Sent
	}
	var we *Error
	return errors.As(err, &we) && we.Code == -1
}

// attempt performs one exchange with one host.
func (c *Client) attempt(ctx context.Context, op, base, sensitive string, idempotent bool, build func(base string) (*http.Request, error)) (answer, error) {
	host := hostOf(base)
	req, err := build(base)
	if err != nil {
		// NewRequest's errors quote the URL: drop the detail.
		return answer{}, fmt.Errorf("wechat: %s: cannot build a request for %s", op, host)
	}
	req.Header.Set("User-Agent", "wxtoken")
	var sent atomic.Bool // set once a connection exists: the request may have gone out
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { sent.Store(true) },
	}))
	sentAt := c.now()
	hc := c.httpClient()
	if !idempotent {
		hc = noReplay(hc)
		req.Close = true
	}
	resp, err := hc.Do(req)
	if err != nil {
		return answer{}, &TransportError{Op: op, Host: host, Sent: sent.Load(), Err: scrubErr(err, sensitive)}
	}
	defer resp.Body.Close()

	limit := c.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if resp.StatusCode != http.StatusOK {
		return answer{}, &StatusError{Op: op, Host: host, StatusCode: resp.StatusCode}
	}
	if err != nil {
		return answer{}, &TransportError{Op: op, Host: host, Sent: true, Err: scrubErr(err, sensitive)}
	}
	if int64(len(body)) > limit {
		return answer{}, &ResponseError{Op: op, Host: host, Reason: fmt.Sprintf("body exceeds %d bytes", limit)}
	}
	trimmed := bytes.TrimSpace(body)
	ct := resp.Header.Get("Content-Type")
	if bytes.HasPrefix(trimmed, []byte("<")) || strings.HasPrefix(strings.ToLower(ct), "text/html") {
		return answer{}, &ResponseError{Op: op, Host: host, Reason: fmt.Sprintf("an HTML page (%d bytes, content-type %q) instead of JSON", len(body), ct)}
	}
	var ans answer
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if !bytes.HasPrefix(trimmed, []byte("{")) || dec.Decode(&ans) != nil {
		return answer{}, &ResponseError{Op: op, Host: host, Reason: fmt.Sprintf("not a JSON object (%d bytes, content-type %q)", len(body), ct)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return answer{}, &ResponseError{Op: op, Host: host, Reason: fmt.Sprintf("trailing data after the JSON object (%d bytes)", len(body))}
	}
	if ans.ErrCode != 0 {
		return answer{}, newError(op, ans.ErrCode, redact(ans.ErrMsg, sensitive))
	}
	if op == OpCheckToken && len(ans.IPList) == 0 {
		// A proxy's or portal's {} must not pass for WeChat accepting
		// the token: only a real answer lists the domain IPs.
		return answer{}, &ResponseError{Op: op, Host: host, Reason: "no errcode and no ip_list"}
	}
	ans.sentAt = sentAt
	return ans, nil
}

// sleep waits before retry n (0-based) with full jitter, and reports false
// when ctx ends first or its deadline would pass during the wait.
func (c *Client) sleep(ctx context.Context, n int) bool {
	d := c.backoff(n)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff returns the delay before retry n (0-based): full jitter, a random
// duration in (0, min(MaxDelay, BaseDelay·2^n)].
func (c *Client) backoff(n int) time.Duration {
	base, maxd := c.BaseDelay, c.MaxDelay
	if base <= 0 {
		base = DefaultBaseDelay
	}
	if maxd <= 0 {
		maxd = DefaultMaxDelay
	}
	ceiling := maxd
	if n < 30 && base<<n < maxd {
		ceiling = base << n
	}
	return rand.N(ceiling) + 1
}

func (c *Client) logRetry(ctx context.Context, op, base string, attempt int, err error) {
	if c.Logger == nil {
		return
	}
	attrs := []any{"op", op, "host", hostOf(base), "attempt", attempt, "class", Classify(err).String()}
	var we *Error
	if errors.As(err, &we) {
		attrs = append(attrs, "errcode", we.Code, "rid", we.RID)
	}
	attrs = append(attrs, "error", err.Error())
	c.Logger.WarnContext(ctx, "wechat: retrying", attrs...)
}

// noReplay returns hc with a transport that opens a fresh connection for the
// request: net/http replays a GET on its own when a reused keep-alive
// connection fails after the request was written, which for a call that must
// not repeat (/cgi-bin/token) would issue a second token. A transport that is
// not an *http.Transport is kept as it is.
func noReplay(hc *http.Client) *http.Client {
	t, ok := hc.Transport.(*http.Transport)
	if hc.Transport == nil {
		t, ok = http.DefaultTransport.(*http.Transport)
	}
	if !ok {
		return hc
	}
	fresh := t.Clone()
	fresh.DisableKeepAlives = true
	out := *hc
	out.Transport = fresh
	return &out
}

// httpClient returns the client to send with. A caller's client is copied
// with redirects refused, whatever its own policy: following one would send
// the secret in the query to whatever host the redirect names.
func (c *Client) httpClient() *http.Client {
	if c.HTTPClient == nil {
		return defaultHTTPClient
	}
	hc := *c.HTTPClient
	hc.CheckRedirect = refuseRedirect
	return &hc
}

func refuseRedirect(*http.Request, []*http.Request) error { return errors.New("redirect refused") }

func (c *Client) baseURLs() []string {
	if len(c.BaseURLs) > 0 {
		return c.BaseURLs
	}
	return DefaultBaseURLs
}

func (c *Client) weComBaseURLs() []string {
	if len(c.WeComBaseURLs) > 0 {
		return c.WeComBaseURLs
	}
	return DefaultWeComBaseURLs
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// hostOf returns the host part of a base URL, for messages.
func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return "?"
}

// scrubErr turns an HTTP client error into one that cannot print the URL:
// *url.Error prints "Get \"https://...?secret=...\": ...", so only its cause
// is kept, and that cause is scrubbed of the sensitive value too.
func scrubErr(err error, sensitive string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &scrubbed{msg: redact(err.Error(), sensitive, url.QueryEscape(sensitive)), cause: err}
}

// scrubbed keeps the cause for errors.Is/As (timeouts, context errors) while
// printing a cleaned message.
type scrubbed struct {
	msg   string
	cause error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.cause }

// printable reports whether s holds only visible ASCII, as WeChat's tokens do.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
