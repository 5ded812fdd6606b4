// Package client is wxtoken's Go consumer package: a business server's way to
// get an app's WeChat access_token and to ask for a fresh one when WeChat
// says it is bad.
//
//	c := client.New(awsCfg, "shop", apiURL)
//	err := c.Do(ctx, func(ctx context.Context, token string) error {
//		return callWeChat(ctx, token) // return a *wechat.Error (or any error with ErrCode() int) on errcode != 0
//	})
//
// Token reads the token from SSM Parameter Store (`{prefix}/{app}/access_token`,
// with its rotation meta `access_token_meta` in the same GetParameters
// request) and caches it in the process until just after wxtoken's next
// planned rotation (pkg/rotation: about 15 reads a day), never past the
// token's expiry less ExpiryMargin, and for MaxAge when the stack publishes
// no meta; concurrent callers share one read. A token replaced unplanned
// (forced, or fetched by another classic fetcher) is noticed when WeChat
// rejects it: Do then refreshes through the API, which answers the new one. Refresh calls
// wxtoken's HTTP API (POST /v1/apps/{app}/refresh) with the token WeChat
// rejected, signed with SigV4 for `execute-api`; concurrent refreshes of one
// stale token share one request. Do runs a WeChat call with the current
// token and, when WeChat answers 40001, 40014 or 42001, refreshes once with
// the failing token and retries once.
//
// Tickets are kept much the same way: Ticket(ctx, ticket.JSAPI) reads
// `{prefix}/{app}/jsapi_ticket` (wx_card_ticket, agent_config_ticket) with
// a cache of its own (the same rule; without meta MaxAge, no expiry guessed from the parameter's age), RefreshTicket asks POST /v1/apps/{app}/tickets/{ticket}/refresh
// for a ticket to replace one a page rejected, and SignURL (wx.config) and
// SignAgentConfig (WeCom's wx.agentConfig) sign a page URL with the current
// ticket, and Resign answers a page's "invalid signature"; SignJSSDK and
// SignCard compute WeChat's signatures from given values.
//
// Errors: Token returns ErrNoToken (Ticket: ErrNoTicket) when nothing is published yet and no API
// is configured, and wrapped SDK errors otherwise; Refresh returns an
// *APIError for an error answer of the API (with the current token for a
// 429) and wrapped transport errors otherwise. No error or log carries a
// token.
package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/wxtoken/wxtoken/pkg/rotation"
)

// Defaults of the Client's zero fields.
const (
	DefaultPrefix = "/wxtoken"
	// DefaultMaxAge bounds how long a value read from SSM is reused when
	// the stack publishes no rotation meta for it (WeChat keeps a classic
	// token valid for 5 minutes after it is superseded, so a process never
	// holds a superseded token past its grace), and is the least time a
	// value the API answered is kept, or the API left alone after an error
	// answer without Retry-After.
	DefaultMaxAge = time.Minute
	// DefaultExpiryMargin: a token is treated as expired this long before
	// its expiry.
	DefaultExpiryMargin = 2 * time.Minute
	// DefaultLifetime is the life assumed for a token read from SSM without
	// rotation meta, counted from the parameter's last modification
	// (WeChat's tokens live 7200 s).
	DefaultLifetime = 7200 * time.Second
	// DefaultSSMRetry: after SSM failed a read (throttled, denied,
	// unreachable), the callers of the next few seconds get that error (or
	// a cached value that has not expired) without another read.
	DefaultSSMRetry = 5 * time.Second
)

// ErrNoToken is returned by Token when no token is published for the app
// and the client has no API endpoint to ask for one.
var ErrNoToken = errors.New("client: no token published for the app")

// SSM is the subset of the SSM client the Client calls: one GetParameters
// per read, for a credential and its rotation meta.
type SSM interface {
	GetParameters(ctx context.Context, in *ssm.GetParametersInput, optFns ...func(*ssm.Options)) (*ssm.GetParametersOutput, error)
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
	// Jitter spreads a fleet's reads after a planned rotation: each read
	// falls this long after rotation.Lag; nil means uniformly random in
	// [0, rotation.Jitter). Set it for a reproducible simulation.
	Jitter func() time.Duration

	mu     sync.Mutex
	caches map[spec]*cache // the token's and each ticket's, made on first use
}

// New returns a Client for app that reads SSM with cfg's credentials and
// region and signs requests to endpoint (the stack's ApiUrl; may be empty).
//
// The stack's region is taken from endpoint when it is an API Gateway URL
// (https://{id}.execute-api.{region}.amazonaws.com[.cn]), for SSM and for
// signing, so that a consumer configured for another region reads the
// stack's Parameter Store; otherwise (a custom domain, no endpoint) it is
// cfg's region.
func New(cfg aws.Config, app, endpoint string) *Client {
	region := cfg.Region
	if r := regionOfURL(endpoint); r != "" {
		region = r
	}
	return &Client{
		App: app, SSM: ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.Region = region }), Endpoint: strings.TrimRight(endpoint, "/"),
		Credentials: cfg.Credentials, Region: region,
	}
}

// regionOfURL is the region of an API Gateway URL ("" for another URL).
func regionOfURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	parts := strings.Split(u.Hostname(), ".")
	// {id}.execute-api.{region}.amazonaws.com[.cn]
	if len(parts) < 5 || parts[1] != "execute-api" || parts[3] != "amazonaws" {
		return ""
	}
	return parts[2]
}

// Token returns the app's current token: from the cache when it is fresh,
// otherwise from SSM (one read shared by concurrent callers). When nothing
// is published, or the published token has expired, it asks the API (if
// configured) for the current token.
func (c *Client) Token(ctx context.Context) (string, error) {
	return c.get(ctx, c.cache(tokenSpec))
}

// Refresh asks wxtoken for a token to replace stale, the token WeChat
// rejected ("" asks for the current token, refreshed only if missing or
// expired). Concurrent calls with the same stale token share one request.
// On a 429 (the app's budget or minimum interval) it returns the current
// token together with the *APIError.
func (c *Client) Refresh(ctx context.Context, stale string) (string, error) {
	return c.refresh(ctx, c.cache(tokenSpec), stale)
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

// errCoder is an error that carries WeChat's errcode.
type errCoder interface{ ErrCode() int }

// TokenInvalid reports whether WeChat's errcode says the access_token is bad:
// 40001 (invalid or not the latest), 40014 (invalid), 42001 (expired).
func TokenInvalid(errcode int) bool {
	return errcode == 40001 || errcode == 40014 || errcode == 42001
}

// Do runs fn with the current token and, when WeChat rejects it, once more
// with a fresh one: the package-level Do with c as the Source.
func (c *Client) Do(ctx context.Context, fn func(ctx context.Context, token string) error) error {
	return Do(ctx, c, fn)
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) jitter() time.Duration {
	if c.Jitter != nil {
		return c.Jitter()
	}
	return rand.N(rotation.Jitter)
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
