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
}

// entry is a cached token or ticket.
type entry struct {
	value   string
	version int64
	expires time.Time // zero: unknown
	readAt  time.Time
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
// (one read shared by concurrent callers).
func (c *Client) get(ctx context.Context, k *cache) (string, error) {
	c.mu.Lock()
	now := c.now()
	if c.fresh(k.cached, now) {
		v := k.cached.value
		c.mu.Unlock()
		return v, nil
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

// fresh reports whether e may be used at now; c.mu is held.
func (c *Client) fresh(e entry, now time.Time) bool {
	if e.value == "" || now.Sub(e.readAt) >= c.maxAge() {
		return false
	}
	return e.expires.IsZero() || now.Before(e.expires.Add(-c.expiryMargin()))
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

func (c *Client) load(ctx context.Context, k *cache) (string, error) {
	name := c.parameter(k.spec)
	out, err := c.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	var nf *ssmtypes.ParameterNotFound
	switch {
	case errors.As(err, &nf):
		if c.Endpoint == "" {
			return "", fmt.Errorf("%w (%s)", noneErr(k.spec), name)
		}
		return c.refresh(ctx, k, "")
	case err != nil:
		return "", fmt.Errorf("client: read %s: %w", name, err)
	case out.Parameter == nil || aws.ToString(out.Parameter.Value) == "":
		return "", fmt.Errorf("client: read %s: empty parameter", name)
	}
	now := c.now()
	e := entry{value: aws.ToString(out.Parameter.Value), version: out.Parameter.Version, readAt: now}
	if m := out.Parameter.LastModifiedDate; m != nil && k.spec.ticket == "" {
		// A token's parameter is written with every new token. A ticket's
		// is not when WeChat answers the same ticket with a new life, so
		// its age says nothing of its expiry: MaxAge alone bounds it.
		e.expires = m.Add(c.lifetime())
	}
	if !e.expires.IsZero() && !now.Before(e.expires.Add(-c.expiryMargin())) && c.Endpoint != "" {
		// The published value is (nearly) expired: the schedule is behind.
		// The API returns the current one, refreshing it if needed.
		return c.refresh(ctx, k, "")
	}
	c.store(k, e)
	return e.value, nil
}

// noneErr is the error of a credential nothing is published for.
func noneErr(s spec) error {
	if s.ticket == "" {
		return ErrNoToken
	}
	return ErrNoTicket
}

// store caches e unless a newer value is cached and still fresh (a read
// that started before an API answer must not replace it). A cached value
// past its MaxAge is replaced whatever the versions: after the parameter
// is recreated its versions start at 1 again.
func (c *Client) store(k *cache, e entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k.cached.value != "" && e.version != 0 && e.version < k.cached.version && c.fresh(k.cached, c.now()) {
		return
	}
	k.cached = e
}

// refresh asks wxtoken for a value to replace stale; concurrent calls with
// the same stale value share one request.
func (c *Client) refresh(ctx context.Context, k *cache, stale string) (string, error) {
	if c.Endpoint == "" {
		return "", errors.New("client: no API endpoint configured (Client.Endpoint)")
	}
	key := stale // in-process only; never logged
	c.mu.Lock()
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
	v := k.spec.value(a)
	if v != "" {
		e := entry{value: v, version: a.Version, readAt: c.now()}
		if a.ExpiresAt != nil {
			e.expires = *a.ExpiresAt
		}
		c.store(k, e)
	}
	if resp.StatusCode == http.StatusOK && v != "" {
		return v, nil
	}
	ae := &APIError{Status: resp.StatusCode, Code: "bad_answer", Message: "no " + k.spec.what() + " in the answer"}
	if a.Error != nil {
		ae.Code, ae.Message, ae.WeChatErrcode = a.Error.Code, a.Error.Message, a.Error.WeChatErrcode
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		ae.RetryAfter = time.Duration(s) * time.Second
	}
	return v, ae
}

// parameter is the credential's SSM parameter name.
func (c *Client) parameter(s spec) string {
	p := c.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	return strings.TrimRight(p, "/") + "/" + c.App + "/" + s.leaf()
}
