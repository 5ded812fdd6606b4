package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const appID = "wxclient00000001"

var creds = stacktest.Creds

const region = stacktest.Region

// local is the local stack a business server talks to (pkg/testsupport/stacktest),
// plus a count of the client's SSM reads.
type local struct {
	*stacktest.Stack
	t     *testing.T
	cfg   aws.Config
	sb    *wechattest.Server
	reads atomic.Int32
}

func newLocal(t *testing.T, app registry.App) *local {
	t.Helper()
	return newLocalWith(t, stacktest.Options{}, app)
}

// newLocalWith is newLocal with the stack's options (the sandbox's).
func newLocalWith(t *testing.T, opts stacktest.Options, app registry.App) *local {
	t.Helper()
	st := stacktest.New(t, opts, app)
	return &local{Stack: st, t: t, cfg: st.Cfg, sb: st.Sandbox}
}

// signedOnly fails the test if the API saw a request without a valid
// signature.
func (l *local) signedOnly() {
	l.t.Helper()
	if n := l.BadSignatures.Load(); n != 0 {
		l.t.Errorf("%d requests were not correctly SigV4-signed", n)
	}
}

// countingSSM counts GetParameters calls (a read of a credential and its
// rotation meta) and, when gate is set, holds each one until gate is
// closed.
type countingSSM struct {
	client.SSM
	n    *atomic.Int32
	gate chan struct{}
}

func (c countingSSM) GetParameters(ctx context.Context, in *ssm.GetParametersInput, o ...func(*ssm.Options)) (*ssm.GetParametersOutput, error) {
	c.n.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	return c.SSM.GetParameters(ctx, in, o...)
}

func (l *local) client(app string, now func() time.Time) *client.Client {
	return &client.Client{
		App: app, SSM: countingSSM{ssm.NewFromConfig(l.cfg), &l.reads, nil}, Prefix: l.Prefix,
		Endpoint: l.APIURL, Credentials: creds, Region: region, Now: now,
	}
}

// meta reads app's token's rotation meta.
func (l *local) meta(key string) rotation.Meta {
	l.t.Helper()
	m, err := tokenstore.New(ssm.NewFromConfig(l.cfg), l.Prefix, "").GetMeta(context.Background(), key)
	if err != nil {
		l.t.Fatalf("read the rotation meta of %s: %v", key, err)
	}
	return m
}

func (l *local) publish() string {
	l.t.Helper()
	return l.Publish("shop")
}

func shop() registry.App {
	return registry.App{Name: "shop", AppID: appID, Kind: registry.OfficialAccount, Mode: registry.Classic}
}

func TestTokenIsReadOnceAndCached(t *testing.T) {
	l := newLocal(t, shop())
	published := l.publish()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := l.client("shop", clock)
	// The first read is held until every caller has called Token, so the
	// callers overlap it: without a shared read each would read on its own.
	gate := make(chan struct{})
	c.SSM = countingSSM{ssm.NewFromConfig(l.cfg), &l.reads, gate}
	var started atomic.Int32
	go func() {
		defer close(gate)
		for deadline := time.Now().Add(10 * time.Second); started.Load() < 50 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // the last callers reach the shared read
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Add(1)
			tok, err := c.Token(context.Background())
			if err == nil && tok != published {
				err = errors.New("a caller got another token than the published one")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := l.reads.Load(); n != 1 {
		t.Errorf("50 concurrent callers made %d SSM reads, want 1", n)
	}
	if _, err := c.Token(context.Background()); err != nil || l.reads.Load() != 1 {
		t.Errorf("a cached token was read again (%d reads, %v)", l.reads.Load(), err)
	}
	// wxtoken publishes when the token will change (rotation meta): no
	// read before that, however long; the first after it reads, while the
	// token it replaces is still valid (a classic token 5 minutes more).
	m := l.meta("shop")
	for _, at := range []time.Time{now.Add(client.DefaultMaxAge), m.RotatesAt.Add(-time.Second)} {
		mu.Lock()
		now = at
		mu.Unlock()
		if _, err := c.Token(context.Background()); err != nil || l.reads.Load() != 1 {
			t.Errorf("%v before the planned rotation: %d reads (%v), want 1", m.RotatesAt.Sub(at), l.reads.Load(), err)
		}
	}
	mu.Lock()
	now = m.RotatesAt.Add(rotation.Lag + rotation.Jitter)
	mu.Unlock()
	if _, err := c.Token(context.Background()); err != nil || l.reads.Load() != 2 {
		t.Errorf("after the planned rotation: %d reads (%v), want 2", l.reads.Load(), err)
	}
	if l.Requests.Load() != 0 {
		t.Errorf("%d API requests for reading a published token, want 0", l.Requests.Load())
	}
}

func TestTokenBeforeAnyPublish(t *testing.T) {
	l := newLocal(t, shop())
	noAPI := l.client("shop", nil)
	noAPI.Endpoint = ""
	if _, err := noAPI.Token(context.Background()); !errors.Is(err, client.ErrNoToken) {
		t.Errorf("without an API: %v, want ErrNoToken", err)
	}
	tok, err := l.client("shop", nil).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.signedOnly()
	if l.sb.Check(tok) != 0 || l.Requests.Load() != 1 || l.sb.TokenCalls(appID) != 1 {
		t.Errorf("token valid: %v, API requests %d, WeChat calls %d; want a valid token from one request and one call",
			l.sb.Check(tok) == 0, l.Requests.Load(), l.sb.TokenCalls(appID))
	}
}

func TestRefreshIsCoalescedAndSigned(t *testing.T) {
	l := newLocal(t, shop())
	stale := l.publish()
	l.sb.Revoke(appID) // WeChat now rejects the published token
	c := l.client("shop", nil)

	var wg sync.WaitGroup
	toks := make([]string, 20)
	errs := make([]error, 20)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], errs[i] = c.Refresh(context.Background(), stale)
		}()
	}
	wg.Wait()
	for i := range toks {
		if errs[i] != nil || toks[i] == stale || toks[i] != toks[0] {
			t.Fatalf("caller %d: %v (same new token for all: %v)", i, errs[i], toks[i] == toks[0])
		}
	}
	if l.sb.Check(toks[0]) != 0 {
		t.Error("the new token is not valid at WeChat")
	}
	if n := l.Requests.Load(); n != 1 {
		t.Errorf("20 concurrent refreshes sent %d requests, want 1", n)
	}
	l.signedOnly()
	if n := l.sb.TokenCalls(appID); n != 2 {
		t.Errorf("WeChat token calls %d, want 2 (publish + one refresh)", n)
	}
	// The refreshed token is cached: no SSM read needed.
	if tok, err := c.Token(context.Background()); err != nil || tok != toks[0] || l.reads.Load() != 0 {
		t.Errorf("Token after Refresh: %v, same: %v, reads %d; want the new token from the cache", err, tok == toks[0], l.reads.Load())
	}
}

func TestDo(t *testing.T) {
	l := newLocal(t, shop())
	l.publish()
	wc := &wechat.Client{BaseURLs: []string{l.sb.URL}, MaxAttempts: 1}
	business := func(ctx context.Context, token string) error { return wc.CheckToken(ctx, token) }

	t.Run("a rejected token is refreshed once and the call retried once", func(t *testing.T) {
		c := l.client("shop", nil)
		if err := c.Do(context.Background(), business); err != nil {
			t.Fatalf("first call: %v", err)
		}
		l.sb.Revoke(appID)
		calls := 0
		err := c.Do(context.Background(), func(ctx context.Context, token string) error {
			calls++
			return business(ctx, token)
		})
		if err != nil || calls != 2 {
			t.Errorf("Do: %v after %d calls, want success on the second", err, calls)
		}
	})
	t.Run("other errors are not retried", func(t *testing.T) {
		c := l.client("shop", nil)
		calls := 0
		boom := &wechat.Error{Code: 45009, Msg: "reach max api daily quota limit"}
		err := c.Do(context.Background(), func(context.Context, string) error { calls++; return boom })
		if !errors.Is(err, boom) || calls != 1 {
			t.Errorf("Do: %v after %d calls, want the error after one call", err, calls)
		}
	})
	t.Run("a second rejection is returned, not looped on", func(t *testing.T) {
		c := l.client("shop", nil)
		calls := 0
		err := c.Do(context.Background(), func(context.Context, string) error {
			calls++
			return &wechat.Error{Code: 40001, Msg: "invalid credential"}
		})
		var we *wechat.Error
		if !errors.As(err, &we) || we.Code != 40001 || calls > 2 {
			t.Errorf("Do: %v after %d calls, want 40001 after at most two", err, calls)
		}
	})
}

func TestRefreshRefused(t *testing.T) {
	app := shop()
	app.MinInterval = time.Hour
	l := newLocal(t, app)
	l.publish()
	l.sb.Revoke(appID)
	c := l.client("shop", nil)
	first, err := c.Refresh(context.Background(), mustToken(t, l))
	if err != nil {
		t.Fatal(err)
	}
	l.sb.Revoke(appID)
	tok, err := c.Refresh(context.Background(), first)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "refresh_refused" || ae.RetryAfter <= 0 || tok != first {
		t.Errorf("second refresh inside the minimum interval: %v (token is the current one: %v), want a 429 with Retry-After and the current token", err, tok == first)
	}
	if strings.Contains(err.Error(), first) {
		t.Error("the error quotes the token")
	}
}

func TestWrongCredentialsAreRefused(t *testing.T) {
	l := newLocal(t, shop())
	c := l.client("shop", nil)
	c.Credentials = credentials.NewStaticCredentialsProvider(stacktest.AccessKeyID, "not-the-secret-key", "")
	_, err := c.Refresh(context.Background(), "")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || l.BadSignatures.Load() != 1 {
		t.Errorf("refresh with a wrong key: %v (bad signatures seen %d); want a 403 from the signature check", err, l.BadSignatures.Load())
	}
}

func mustToken(t *testing.T, l *local) string {
	t.Helper()
	tok, _ := l.Published("shop")
	return tok
}
