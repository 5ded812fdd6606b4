// Package client is wxtoken's Go consumer package: a business server's way to
// get an app's WeChat access_token and to ask for a fresh one when WeChat
// says it is bad.
//
//	c := client.New(awsCfg, "shop", apiURL)
//	err := c.Do(ctx, func(ctx context.Context, token string) error {
//		return callWeChat(ctx, token) // return a *wechat.Error (or any error with ErrCode() int) on errcode != 0
//	})
//
// Token reads the token from SSM Parameter Store (`{prefix}/{app}/access_token`)
// and caches it in the process, for at most MaxAge and never past the token's
// expiry less ExpiryMargin; concurrent callers share one read. Refresh calls
// wxtoken's HTTP API (POST /v1/apps/{app}/refresh) with the token WeChat
// rejected, signed with SigV4 for `execute-api`; concurrent refreshes of one
// stale token share one request. Do runs a WeChat call with the current
// token and, when WeChat answers 40001, 40014 or 42001, refreshes once with
// the failing token and retries once.
//
// Errors: Token returns ErrNoToken when nothing is published yet and no API
// is configured, and wrapped SDK errors otherwise; Refresh returns an
// *APIError for an error answer of the API (with the current token for a
// 429) and wrapped transport errors otherwise. No error or log carries a
// token.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// Defaults of the Client's zero fields.
const (
	DefaultPrefix = "/wxtoken"
	// DefaultMaxAge bounds how long a token read from SSM is reused. WeChat
	// keeps a classic token valid for 5 minutes after it is superseded, so
	// a process never holds a superseded token past its grace.
	DefaultMaxAge = time.Minute
	// DefaultExpiryMargin: a token is treated as expired this long before
	// its expiry.
	DefaultExpiryMargin = 2 * time.Minute
	// DefaultLifetime is the life assumed for a token read from SSM, counted
	// from the parameter's last modification (WeChat's tokens live 7200 s).
	DefaultLifetime = 7200 * time.Second
)

// ErrNoToken is returned by Token when no token is published for the app
// and the client has no API endpoint to ask for one.
var ErrNoToken = errors.New("client: no token published for the app")

// SSM is the subset of the SSM client the Client calls.
type SSM interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// Client gets one app's token. Set App, SSM and (for Refresh and Do)
// Endpoint; New fills the rest from an aws.Config. A Client is safe for
// concurrent use; share one per app in a process.
type Client struct {
	App string
	SSM SSM
	// Prefix is the stack's ParameterPrefix; empty means DefaultPrefix.
	Prefix string
	// Endpoint is the stack's ApiUrl (no trailing slash); empty disables
	// Refresh.
	Endpoint string
	// HTTPClient sends API requests; nil means a client with a 30 s timeout.
	HTTPClient *http.Client
	// Credentials and Region sign API requests (SigV4, service
	// execute-api); nil Credentials sends them unsigned (a local server).
	Credentials aws.CredentialsProvider
	Region      string
	// MaxAge, ExpiryMargin and Lifetime tune the cache (see the defaults).
	MaxAge, ExpiryMargin, Lifetime time.Duration
	// Now is the cache's clock; nil means time.Now. Signatures always use
	// the wall clock.
	Now func() time.Time

	mu       sync.Mutex
	cached   entry
	reading  *call
	inflight map[string]*call // refreshes by stale token
}

// entry is a cached token.
type entry struct {
	token   string
	version int64
	expires time.Time // zero: unknown
	readAt  time.Time
}

// call is one read or refresh that concurrent callers share.
type call struct {
	done chan struct{}
	tok  string
	err  error
}

// New returns a Client for app that reads SSM with cfg's credentials and
// region and signs requests to endpoint (the stack's ApiUrl; may be empty).
func New(cfg aws.Config, app, endpoint string) *Client {
	return &Client{
		App: app, SSM: ssm.NewFromConfig(cfg), Endpoint: strings.TrimRight(endpoint, "/"),
		Credentials: cfg.Credentials, Region: cfg.Region,
	}
}

// Token returns the app's current token: from the cache when it is fresh,
// otherwise from SSM (one read shared by concurrent callers). When nothing
// is published, or the published token has expired, it asks the API (if
// configured) for the current token.
func (c *Client) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	now := c.now()
	if c.fresh(now) {
		tok := c.cached.token
		c.mu.Unlock()
		return tok, nil
	}
	cl := c.reading
	if cl == nil {
		cl = &call{done: make(chan struct{})}
		c.reading = cl
		go c.read(context.WithoutCancel(ctx), cl)
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.tok, cl.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// fresh reports whether the cached token may be used at now; c.mu is held.
func (c *Client) fresh(now time.Time) bool {
	e := c.cached
	if e.token == "" || now.Sub(e.readAt) >= c.maxAge() {
		return false
	}
	return e.expires.IsZero() || now.Before(e.expires.Add(-c.expiryMargin()))
}

// read loads the token from SSM (bounded to 30 s: it runs detached from the
// first caller's context, since other callers share it).
func (c *Client) read(ctx context.Context, cl *call) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tok, err := c.load(ctx)
	c.mu.Lock()
	c.reading = nil
	c.mu.Unlock()
	cl.tok, cl.err = tok, err
	close(cl.done)
}

func (c *Client) load(ctx context.Context) (string, error) {
	name := c.parameter()
	out, err := c.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	var nf *ssmtypes.ParameterNotFound
	switch {
	case errors.As(err, &nf):
		if c.Endpoint == "" {
			return "", fmt.Errorf("%w (%s)", ErrNoToken, name)
		}
		return c.Refresh(ctx, "")
	case err != nil:
		return "", fmt.Errorf("client: read %s: %w", name, err)
	case out.Parameter == nil || aws.ToString(out.Parameter.Value) == "":
		return "", fmt.Errorf("client: read %s: empty parameter", name)
	}
	now := c.now()
	e := entry{token: aws.ToString(out.Parameter.Value), version: out.Parameter.Version, readAt: now}
	if m := out.Parameter.LastModifiedDate; m != nil {
		e.expires = m.Add(c.lifetime())
	}
	if !e.expires.IsZero() && !now.Before(e.expires.Add(-c.expiryMargin())) && c.Endpoint != "" {
		// The published token is (nearly) expired: the schedule is behind.
		// The API returns the current token, refreshing it if needed.
		return c.Refresh(ctx, "")
	}
	c.store(e)
	return e.token, nil
}

// store caches e unless a newer token is cached already.
func (c *Client) store(e entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached.token != "" && e.version != 0 && e.version < c.cached.version {
		return
	}
	c.cached = e
}

// Refresh asks wxtoken for a token to replace stale, the token WeChat
// rejected ("" asks for the current token, refreshed only if missing or
// expired). Concurrent calls with the same stale token share one request.
// On a 429 (the app's budget or minimum interval) it returns the current
// token together with the *APIError.
func (c *Client) Refresh(ctx context.Context, stale string) (string, error) {
	if c.Endpoint == "" {
		return "", errors.New("client: no API endpoint configured (Client.Endpoint)")
	}
	key := stale // in-process only; never logged
	c.mu.Lock()
	if c.inflight == nil {
		c.inflight = map[string]*call{}
	}
	cl, ok := c.inflight[key]
	if !ok {
		cl = &call{done: make(chan struct{})}
		c.inflight[key] = cl
		go func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			cl.tok, cl.err = c.post(rctx, stale)
			c.mu.Lock()
			delete(c.inflight, key)
			c.mu.Unlock()
			close(cl.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.tok, cl.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// answer is the API's JSON answer (token and error fields).
type answer struct {
	App         string     `json:"app"`
	AccessToken string     `json:"access_token"`
	Version     int64      `json:"version"`
	ExpiresAt   *time.Time `json:"expires_at"`
	Error       *struct {
		Code          string `json:"code"`
		Message       string `json:"message"`
		WeChatErrcode int    `json:"wechat_errcode"`
	} `json:"error"`
}

// APIError is an error answer of wxtoken's API.
type APIError struct {
	Status        int
	Code          string
	Message       string
	WeChatErrcode int
	RetryAfter    time.Duration
}

// Error implements error.
func (e *APIError) Error() string {
	msg := fmt.Sprintf("client: wxtoken answered %d %s: %s", e.Status, e.Code, e.Message)
	if e.WeChatErrcode != 0 {
		msg += fmt.Sprintf(" (WeChat errcode %d)", e.WeChatErrcode)
	}
	return msg
}

func (c *Client) post(ctx context.Context, stale string) (string, error) {
	body := []byte("{}")
	if stale != "" {
		body, _ = json.Marshal(map[string]string{"stale_token": stale})
	}
	url := c.Endpoint + "/v1/apps/" + c.App + "/refresh"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("client: refresh %s: %w", c.App, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := c.sign(ctx, req, body); err != nil {
		return "", err
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("client: refresh %s: %w", c.App, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("client: refresh %s: read answer: %w", c.App, err)
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		return "", &APIError{Status: resp.StatusCode, Code: "bad_answer", Message: fmt.Sprintf("not a wxtoken answer (%d bytes)", len(raw))}
	}
	if a.AccessToken != "" {
		e := entry{token: a.AccessToken, version: a.Version, readAt: c.now()}
		if a.ExpiresAt != nil {
			e.expires = *a.ExpiresAt
		}
		c.store(e)
	}
	if resp.StatusCode == http.StatusOK && a.AccessToken != "" {
		return a.AccessToken, nil
	}
	ae := &APIError{Status: resp.StatusCode, Code: "bad_answer", Message: "no token in the answer"}
	if a.Error != nil {
		ae.Code, ae.Message, ae.WeChatErrcode = a.Error.Code, a.Error.Message, a.Error.WeChatErrcode
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		ae.RetryAfter = time.Duration(s) * time.Second
	}
	return a.AccessToken, ae
}

// sign adds a SigV4 signature for execute-api (nothing without Credentials).
func (c *Client) sign(ctx context.Context, req *http.Request, body []byte) error {
	if c.Credentials == nil {
		return nil
	}
	if err := SignRequest(ctx, c.Credentials, c.Region, req, body); err != nil {
		return fmt.Errorf("client: refresh %s: %w", c.App, err)
	}
	return nil
}

// errCoder is an error that carries WeChat's errcode.
type errCoder interface{ ErrCode() int }

// TokenInvalid reports whether WeChat's errcode says the access_token is bad:
// 40001 (invalid or not the latest), 40014 (invalid), 42001 (expired).
func TokenInvalid(errcode int) bool {
	return errcode == 40001 || errcode == 40014 || errcode == 42001
}

// Do runs fn with the current token. When fn's error carries a
// token-invalid errcode (an error in its chain has an ErrCode() int method,
// as *wechat.Error has), Do refreshes once with the failing token and runs
// fn once more with the new one. It returns fn's error, or the refresh
// error joined with it.
func (c *Client) Do(ctx context.Context, fn func(ctx context.Context, token string) error) error {
	tok, err := c.Token(ctx)
	if err != nil {
		return err
	}
	err = fn(ctx, tok)
	var ec errCoder
	if err == nil || !errors.As(err, &ec) || !TokenInvalid(ec.ErrCode()) {
		return err
	}
	fresh, rerr := c.Refresh(ctx, tok)
	if fresh == "" || fresh == tok {
		if rerr == nil {
			rerr = errors.New("client: wxtoken returned the same token")
		}
		return errors.Join(err, rerr)
	}
	return fn(ctx, fresh)
}

func (c *Client) parameter() string {
	p := c.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	return strings.TrimRight(p, "/") + "/" + c.App + "/access_token"
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) maxAge() time.Duration {
	if c.MaxAge > 0 {
		return c.MaxAge
	}
	return DefaultMaxAge
}

func (c *Client) expiryMargin() time.Duration {
	if c.ExpiryMargin > 0 {
		return c.ExpiryMargin
	}
	return DefaultExpiryMargin
}

func (c *Client) lifetime() time.Duration {
	if c.Lifetime > 0 {
		return c.Lifetime
	}
	return DefaultLifetime
}
