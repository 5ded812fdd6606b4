package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/rotation"
)

// Review K1: after the token's parameter is recreated (versions start at 1
// again), a read of the new parameter is cached like any other; it used to
// be dropped for its lower version, so that every Token was an SSM read.
func TestRecreatedParameterIsCached(t *testing.T) {
	l := newLocal(t, shop())
	l.publish() // version 1
	name := l.Prefix + "/shop/access_token"
	api := ssm.NewFromConfig(l.cfg)
	ctx := context.Background()
	if _, err := api.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String("placeholder-value-a"), // version 2
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := l.client("shop", func() time.Time { return now })
	if _, err := c.Token(ctx); err != nil {
		t.Fatal(err)
	}
	// The parameter is deleted and written again: version 1.
	if _, err := api.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String("placeholder-value-b"),
		Type: ssmtypes.ParameterTypeSecureString}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(client.DefaultMaxAge)
	l.reads.Store(0)
	for range 3 {
		if tok, err := c.Token(ctx); err != nil || tok != "placeholder-value-b" {
			t.Fatalf("Token after the parameter was recreated: %q, %v; want the new value", tok, err)
		}
	}
	if n := l.reads.Load(); n != 1 {
		t.Errorf("3 Token calls after the parameter was recreated made %d SSM reads, want 1", n)
	}
}

// Review K4: New takes the region of the stack from its API URL, for SSM
// and for signing, so that a consumer configured for another region reads
// the right Parameter Store and signs for the right region.
func TestNewTakesTheRegionFromTheURL(t *testing.T) {
	cfg := aws.Config{Region: "eu-west-1", Credentials: creds}
	tests := []struct{ url, want string }{
		{"https://abcdef1234.execute-api.ap-east-1.amazonaws.com", "ap-east-1"},
		{"https://abcdef1234.execute-api.cn-north-1.amazonaws.com.cn/", "cn-north-1"},
		{"https://tokens.example.com", "eu-west-1"},
		{"", "eu-west-1"},
	}
	for _, tt := range tests {
		c := client.New(cfg, "shop", tt.url)
		ssmRegion := ""
		if sc, ok := c.SSM.(*ssm.Client); ok {
			ssmRegion = sc.Options().Region
		}
		if c.Region != tt.want || ssmRegion != tt.want {
			t.Errorf("New(%q): signing region %q, SSM region %q; want %q", tt.url, c.Region, ssmRegion, tt.want)
		}
	}
}

// Review K2: when the published token is inside the client's expiry
// margin, a cache miss asks the API, which answers the same (still valid)
// token; the client then keeps it for MaxAge instead of asking again on
// every call: when the schedule is stuck, and when the client's margin is
// wider than the schedule's (its rotation is still ahead).
func TestNearExpiryAsksTheAPIOncePerMaxAge(t *testing.T) {
	tests := []struct {
		name   string
		at     func(m rotation.Meta) time.Time
		margin time.Duration
	}{
		{"the schedule is stuck", func(m rotation.Meta) time.Time { return m.ExpiresAt.Add(-90 * time.Second) }, 0},
		{"a margin wider than the schedule's", func(m rotation.Meta) time.Time { return m.RotatesAt.Add(-5 * time.Minute) }, 30 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLocal(t, shop())
			published := l.publish()
			l.sb.Clock().Set(tt.at(l.meta("shop")))
			c := l.client("shop", l.sb.Now)
			c.ExpiryMargin = tt.margin
			for i := range 10 {
				if tok, err := c.Token(context.Background()); err != nil || tok != published {
					t.Fatalf("Token #%d: %v (the published one: %v)", i, err, tok == published)
				}
			}
			if r, q := l.reads.Load(), l.Requests.Load(); r != 1 || q != 1 {
				t.Errorf("10 Token calls near the expiry: %d SSM reads and %d API requests, want 1 and 1", r, q)
			}
			l.sb.Clock().Advance(client.DefaultMaxAge)
			if _, err := c.Token(context.Background()); err != nil || l.Requests.Load() != 2 {
				t.Errorf("after MaxAge: %d API requests (%v), want 2", l.Requests.Load(), err)
			}
		})
	}
}

// stubSSM answers every read with params (nothing: not published), or
// err, counting the reads; with gate set, a read signals entered and waits
// for gate to close.
type stubSSM struct {
	params  []ssmtypes.Parameter
	err     error
	gate    chan struct{}
	entered chan struct{}
	n       atomic.Int32
}

func (s *stubSSM) GetParameters(_ context.Context, in *ssm.GetParametersInput, _ ...func(*ssm.Options)) (*ssm.GetParametersOutput, error) {
	s.n.Add(1)
	if s.gate != nil {
		s.entered <- struct{}{}
		<-s.gate
	}
	if s.err != nil {
		return nil, s.err
	}
	out := &ssm.GetParametersOutput{}
	for _, name := range in.Names {
		found := false
		for _, p := range s.params {
			if aws.ToString(p.Name) == name {
				out.Parameters, found = append(out.Parameters, p), true
			}
		}
		if !found {
			out.InvalidParameters = append(out.InvalidParameters, name)
		}
	}
	return out, nil
}

// stubAPI is an API that answers every request with status, body and a
// Retry-After (seconds; 0: none), counting the requests.
func stubAPI(t *testing.T, status int, body string, retryAfter int) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		if retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// Review K2: an error answer's Retry-After is honoured (and, without one,
// MaxAge): until then Token returns the error without a read or a request.
func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter int
		wait       time.Duration
	}{
		{"503 with Retry-After", 503, 30, 30 * time.Second},
		{"500 without", 500, 0, client.DefaultMaxAge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, requests := stubAPI(t, tt.status, `{"error":{"code":"lock_timeout","message":"try again"}}`, tt.retryAfter)
			now := time.Now()
			sm := &stubSSM{}
			c := &client.Client{App: "shop", SSM: sm, Endpoint: srv.URL, Now: func() time.Time { return now }}
			for i := range 5 {
				var ae *client.APIError
				if _, err := c.Token(context.Background()); !errors.As(err, &ae) || ae.Status != tt.status {
					t.Fatalf("Token #%d: %v, want the API's %d", i, err, tt.status)
				}
			}
			if requests.Load() != 1 || sm.n.Load() != 1 {
				t.Errorf("5 Token calls: %d API requests, %d SSM reads; want 1 and 1", requests.Load(), sm.n.Load())
			}
			now = now.Add(tt.wait - time.Second)
			_, _ = c.Token(context.Background())
			if requests.Load() != 1 {
				t.Errorf("a second before the wait ends: %d requests, want 1", requests.Load())
			}
			now = now.Add(time.Second)
			_, _ = c.Token(context.Background())
			if requests.Load() != 2 {
				t.Errorf("once the wait ends: %d requests, want 2", requests.Load())
			}
		})
	}
}

// Review K3: a 429 that carries the current token is an answer for Token
// (wxtoken will not refresh now; the token it holds is the one to use),
// served, and the API not asked again, until Retry-After (while it has not
// expired: TestRefusalTokenIsNotServedPastItsExpiry); Refresh still reports
// the refusal with it.
func TestRefusalWithATokenIsAnAnswer(t *testing.T) {
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	body := `{"error":{"code":"refresh_refused","message":"minimum interval"},"app":"shop","access_token":"token-in-the-429","version":3,"expires_at":"` + exp + `","refreshed":false}`
	srv, requests := stubAPI(t, 429, body, 120)
	now := time.Now()
	c := &client.Client{App: "shop", SSM: &stubSSM{}, Endpoint: srv.URL, Now: func() time.Time { return now }}
	for i := range 3 {
		if tok, err := c.Token(context.Background()); err != nil || tok != "token-in-the-429" {
			t.Fatalf("Token #%d: %q, %v; want the 429's token and no error", i, tok, err)
		}
	}
	now = now.Add(119 * time.Second)
	if _, err := c.Token(context.Background()); err != nil || requests.Load() != 1 {
		t.Errorf("within Retry-After: %d requests (%v), want 1", requests.Load(), err)
	}
	tok, err := c.Refresh(context.Background(), "an-older-token")
	var ae *client.APIError
	if tok != "token-in-the-429" || !errors.As(err, &ae) || ae.Status != 429 || ae.RetryAfter != 120*time.Second {
		t.Errorf("Refresh: %q, %v; want the token with the 429", tok, err)
	}
}

// Without rotation meta (a stack that publishes none, or a meta of
// another version), the client reads every MaxAge, as before.
func TestWithoutMetaReadsEveryMaxAge(t *testing.T) {
	l := newLocal(t, shop())
	l.publish()
	if _, err := ssm.NewFromConfig(l.cfg).DeleteParameter(context.Background(), &ssm.DeleteParameterInput{Name: aws.String(l.Prefix + "/shop/access_token_meta")}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := l.client("shop", func() time.Time { return now })
	for i := range 3 {
		if _, err := c.Token(context.Background()); err != nil || l.reads.Load() != int32(i+1) {
			t.Errorf("read #%d: %d reads (%v), want %d", i+1, l.reads.Load(), err, i+1)
		}
		now = now.Add(client.DefaultMaxAge)
	}
}
