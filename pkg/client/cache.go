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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/ticket"
)

// spec says where one of the app's credentials (its token or a ticket) is
// published and how the API refreshes it.
type spec struct {
	// ticket is the ticket; "" for the access token.
	ticket ticket.Ticket
}

// tokenSpec is the access token's.
var tokenSpec = spec{}

// leaf is the last element of the credential's SSM parameter.
func (s spec) leaf() string {
	if s.ticket == "" {
		return "access_token"
	}
	return s.ticket.ParameterLeaf()
}

// route is the API path of the credential's refresh, after /v1/apps/{app}.
func (s spec) route() string {
	if s.ticket == "" {
		return "/refresh"
	}
	return "/tickets/" + string(s.ticket) + "/refresh"
}

// staleField is the request's field for the value WeChat rejected.
func (s spec) staleField() string {
	if s.ticket == "" {
		return "stale_token"
	}
	return "stale_ticket"
}

// what names the credential in errors.
func (s spec) what() string {
	if s.ticket == "" {
		return "token"
	}
	return s.ticket.ParameterLeaf()
}

// value is the credential in an answer of the API.
func (s spec) value(a answer) string {
	if s.ticket == "" {
		return a.AccessToken
	}
	return a.Ticket
}

// cache is one credential's cached value and the read and refreshes in
// flight; the Client's mu guards it.
type cache struct {
	spec     spec
	cached   entry
	reading  *call
	inflight map[string]*call // refreshes by stale value
	// notBefore: the API is not asked for the current value (ensure)
	// before it, after an error answer (Retry-After, or MaxAge); refusal
	// is that answer and refused the stale value it was asked to replace,
	// so that a claim of the same value meanwhile gets the same answer
	// without a request.
	notBefore time.Time
	refusal   *APIError
	refused   string
	// failure is the last read's or ensure's error, returned without
	// another read until failUntil when nothing usable is cached.
	failure   error
	failUntil time.Time
}

// entry is a cached token or ticket.
type entry struct {
	value   string
	version int64
	expires time.Time // zero: unknown
	until   time.Time // read again from then on
}

// call is one read or refresh that concurrent callers share.
type call struct {
	done chan struct{}
	val  string
	err  error
}

// wait returns the call's result, or ctx's error if ctx ends first (the
// call goes on for the callers that share it).
func (cl *call) wait(ctx context.Context) (string, error) {
	select {
	case <-cl.done:
		return cl.val, cl.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// cache returns the credential's cache, made on first use.
func (c *Client) cache(s spec) *cache {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.caches == nil {
		c.caches = map[spec]*cache{}
	}
	k := c.caches[s]
	if k == nil {
		k = &cache{spec: s, inflight: map[string]*call{}}
		c.caches[s] = k
	}
	return k
}

// get returns the credential: cached when fresh, otherwise read from SSM
// (one read shared by concurrent callers). While the API asked to wait and
// nothing usable is cached, it returns the API's last error without a read.
func (c *Client) get(ctx context.Context, k *cache) (string, error) {
	c.mu.Lock()
	now := c.now()
	if k.cached.fresh(now) {
		v := k.cached.value
		c.mu.Unlock()
		return v, nil
	}
	if k.failure != nil && now.Before(k.failUntil) {
		err := k.failure
		c.mu.Unlock()
		return "", err
	}
	cl := k.reading
	if cl == nil {
		cl = &call{done: make(chan struct{})}
		k.reading = cl
		go c.read(context.WithoutCancel(ctx), k, cl)
	}
	c.mu.Unlock()
	return cl.wait(ctx)
}

// fresh reports whether e may be used at now.
func (e entry) fresh(now time.Time) bool {
	return e.value != "" && now.Before(e.until)
}

// nearExpiry reports whether e's value expires within the ExpiryMargin.
func (c *Client) nearExpiry(e entry, now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires.Add(-c.expiryMargin()))
}

// until is when a value of version expiring at expires (zero: unknown),
// read at now with m beside it (ok: m was read and parsed), is read again:
// just after its planned rotation (rotation.Rule.ReadAt), and never sooner
// than MaxAge after now, so that a value near its expiry the API has just
// answered is not asked for again by every caller (the schedule is behind:
// the API keeps it valid); but never past its expiry.
func (c *Client) until(m rotation.Meta, ok bool, version int64, expires, now time.Time) time.Time {
	rule := rotation.Rule{Fallback: c.maxAge(), Margin: c.expiryMargin()}
	at := rule.ReadAt(m, ok, version, now, c.jitter())
	if floor := now.Add(c.maxAge()); at.Before(floor) {
		at = floor
	}
	if !expires.IsZero() && now.Before(expires) && expires.Before(at) {
		at = expires
	}
	return at
}

// read loads the credential from SSM (bounded to 30 s: it runs detached
// from the first caller's context, since other callers share it).
func (c *Client) read(ctx context.Context, k *cache, cl *call) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := c.load(ctx, k)
	c.mu.Lock()
	k.reading = nil
	c.mu.Unlock()
	cl.val, cl.err = v, err
	close(cl.done)
}

// load reads the credential and its rotation meta in one GetParameters
// request (the meta is a String: one KMS request, for the credential). It
// asks the API for the current value when nothing is published or the
// published value is (nearly) expired, unless the API asked to wait.
func (c *Client) load(ctx context.Context, k *cache) (string, error) {
	name := c.parameter(k.spec)
	metaName := rotation.Name(name)
	out, err := c.SSM.GetParameters(ctx, &ssm.GetParametersInput{Names: []string{name, metaName}, WithDecryption: aws.Bool(true)})
	if err != nil {
		return c.readFailed(k, fmt.Errorf("client: read %s: %w", name, err))
	}
	var p *ssmtypes.Parameter
	var m rotation.Meta
	ok := false
	for i := range out.Parameters {
		switch aws.ToString(out.Parameters[i].Name) {
		case name:
			p = &out.Parameters[i]
		case metaName:
			m, err = rotation.Decode(aws.ToString(out.Parameters[i].Value))
			ok = err == nil
		}
	}
	now := c.now()
	apiOK := c.Endpoint != "" && !now.Before(c.notBefore(k))
	switch {
	case p == nil && c.Endpoint == "":
		return "", fmt.Errorf("%w (%s)", noneErr(k.spec), name)
	case p == nil && !apiOK:
		if v, ok := c.keepCached(k, c.notBefore(k)); ok {
			return v, nil // the API's last answer, still valid
		}
		return "", fmt.Errorf("client: nothing is published at %s, and wxtoken asked to wait until %s before asking again", name, c.notBefore(k).Format(time.RFC3339))
	case p == nil:
		return c.ensure(ctx, k)
	case aws.ToString(p.Value) == "":
		return "", fmt.Errorf("client: read %s: empty parameter", name)
	}
	e := entry{value: aws.ToString(p.Value), version: p.Version}
	switch {
	case ok && m.Version == p.Version:
		e.expires = m.ExpiresAt
	case p.LastModifiedDate != nil && k.spec.ticket == "":
		// A stack without rotation meta: a token's parameter is written
		// with every new token, so its age bounds its life. A ticket's is
		// not rewritten when WeChat extends the same ticket: MaxAge alone
		// bounds it.
		e.expires = p.LastModifiedDate.Add(c.lifetime())
	}
	if c.nearExpiry(e, now) && apiOK {
		// The published value is (nearly) expired: the schedule is behind.
		// The API returns the current one, refreshing it if needed. When
		// it fails, the published value, if still valid, is served until
		// the API may be asked again (ensure set notBefore).
		v, err := c.ensure(ctx, k)
		if v != "" || err == nil || ctx.Err() != nil || !now.Before(e.expires) {
			return v, err
		}
	}
	e.until = c.until(m, ok, p.Version, e.expires, now)
	return c.store(k, e, ""), nil
}

// readFailed answers a read SSM failed (throttled, denied, unreachable):
// the cached value, if it has not expired, for DefaultSSMRetry more;
// otherwise err, which the callers of the next DefaultSSMRetry get without
// another read.
func (c *Client) readFailed(k *cache, err error) (string, error) {
	retry := c.now().Add(DefaultSSMRetry)
	if v, ok := c.keepCached(k, retry); ok {
		return v, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k.failure, k.failUntil = err, retry
	return "", err
}

// keepCached keeps the cached value until until (never past its expiry)
// and returns it, if it has not expired; ok is false when there is none.
func (c *Client) keepCached(k *cache, until time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := k.cached
	if now := c.now(); e.value == "" || (!e.expires.IsZero() && !now.Before(e.expires)) {
		return "", false
	}
	if !e.expires.IsZero() && e.expires.Before(until) {
		until = e.expires
	}
	e.until = until
	k.cached = e
	return e.value, true
}

// notBefore is when the API may be asked for the current value again.
func (c *Client) notBefore(k *cache) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return k.notBefore
}

// ensure asks the API for the current value. A 429 that carries one is an
// answer: wxtoken will not refresh now, and the value it holds is the one
// to use.
func (c *Client) ensure(ctx context.Context, k *cache) (string, error) {
	v, err := c.refresh(ctx, k, "")
	var ae *APIError
	if v != "" && errors.As(err, &ae) {
		return v, nil
	}
	if v == "" && err != nil && ctx.Err() == nil {
		c.mu.Lock()
		if k.notBefore.Before(c.now()) {
			k.notBefore = c.now().Add(c.maxAge())
		}
		k.failure, k.failUntil = err, k.notBefore
		c.mu.Unlock()
	}
	return v, err
}

// noneErr is the error of a credential nothing is published for.
func noneErr(s spec) error {
	if s.ticket == "" {
		return ErrNoToken
	}
	return ErrNoTicket
}

// store caches e and returns the value the cache then holds: e's, unless
// a newer value is cached and still fresh (a read that started before an
// API answer must not replace it). A cached value past its time, or known
// bad (stale, the value WeChat rejected, which the API's answer e
// replaces), is replaced whatever the versions: after the parameter is
// recreated its versions start at 1 again.
func (c *Client) store(k *cache, e entry, stale string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k.cached.value != "" && k.cached.value != stale && e.version != 0 && e.version < k.cached.version && k.cached.fresh(c.now()) {
		return k.cached.value
	}
	k.cached = e
	k.failure = nil
	return e.value
}

// refresh asks wxtoken for a value to replace stale; concurrent calls with
// the same stale value share one request.
func (c *Client) refresh(ctx context.Context, k *cache, stale string) (string, error) {
	if c.Endpoint == "" {
		return "", errors.New("client: no API endpoint configured (Client.Endpoint)")
	}
	key := stale // in-process only; never logged
	c.mu.Lock()
	if r := k.refusal; r != nil && stale != "" && stale == k.refused && c.now().Before(k.notBefore) {
		// The API refused to replace this value and asked to wait: the
		// same claim gets the same answer (the value it held then).
		v := k.cached.value
		c.mu.Unlock()
		return v, r
	}
	cl, ok := k.inflight[key]
	if !ok {
		cl = &call{done: make(chan struct{})}
		k.inflight[key] = cl
		go func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			cl.val, cl.err = c.post(rctx, k, stale)
			c.mu.Lock()
			delete(k.inflight, key)
			c.mu.Unlock()
			close(cl.done)
		}()
	}
	c.mu.Unlock()
	return cl.wait(ctx)
}

// answer is the API's JSON answer (token, ticket and error fields).
type answer struct {
	App         string     `json:"app"`
	AccessToken string     `json:"access_token"`
	Ticket      string     `json:"ticket"`
	Version     int64      `json:"version"`
	ExpiresAt   *time.Time `json:"expires_at"`
	RotatesAt   *time.Time `json:"rotates_at"`
	Error       *struct {
		Code          string `json:"code"`
		Message       string `json:"message"`
		WeChatErrcode int    `json:"wechat_errcode"`
	} `json:"error"`
}

func (c *Client) post(ctx context.Context, k *cache, stale string) (string, error) {
	what := c.App + " " + k.spec.what()
	body := []byte("{}")
	if stale != "" {
		body, _ = json.Marshal(map[string]string{k.spec.staleField(): stale})
	}
	url := c.Endpoint + "/v1/apps/" + c.App + k.spec.route()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("client: refresh %s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Credentials != nil {
		if err := SignRequest(ctx, c.Credentials, c.Region, req, body); err != nil {
			return "", fmt.Errorf("client: refresh %s: %w", what, err)
		}
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("client: refresh %s: %w", what, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("client: refresh %s: read answer: %w", what, err)
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		return "", &APIError{Status: resp.StatusCode, Code: "bad_answer", Message: fmt.Sprintf("not a wxtoken answer (%d bytes)", len(raw))}
	}
	var retryAfter time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	now := c.now()
	v := k.spec.value(a)
	if v != "" {
		v = c.store(k, c.answered(a, v, now), stale)
	}
	if resp.StatusCode == http.StatusOK && v != "" {
		return v, nil
	}
	ae := &APIError{Status: resp.StatusCode, Code: "bad_answer", Message: "no " + k.spec.what() + " in the answer", RetryAfter: retryAfter}
	if a.Error != nil {
		ae.Code, ae.Message, ae.WeChatErrcode = a.Error.Code, a.Error.Message, a.Error.WeChatErrcode
	}
	if retryAfter > 0 {
		c.mu.Lock()
		if wait := now.Add(retryAfter); k.notBefore.Before(wait) {
			k.notBefore = wait
		}
		k.refusal, k.refused = ae, stale
		c.mu.Unlock()
	}
	return v, ae
}

// answered is the cache entry of value v in the API's answer a at now:
// kept until just after its planned rotation (the answer's rotates_at). A
// refusal's Retry-After keeps the API from being asked again (notBefore),
// not the value past its time.
func (c *Client) answered(a answer, v string, now time.Time) entry {
	e := entry{value: v, version: a.Version}
	var m rotation.Meta
	ok := a.ExpiresAt != nil && a.RotatesAt != nil && a.Version != 0
	if a.ExpiresAt != nil {
		e.expires = *a.ExpiresAt
	}
	if ok {
		m = rotation.Meta{Version: a.Version, ExpiresAt: *a.ExpiresAt, RotatesAt: *a.RotatesAt}
	}
	e.until = c.until(m, ok, a.Version, e.expires, now)
	return e
}

// parameter is the credential's SSM parameter name.
func (c *Client) parameter(s spec) string {
	p := c.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	return strings.TrimRight(p, "/") + "/" + c.App + "/" + s.leaf()
}
