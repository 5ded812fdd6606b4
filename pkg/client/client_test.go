package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/api"
	"github.com/wxtoken/wxtoken/pkg/awstest"
	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const (
	appID  = "wxclient00000001"
	secret = "client-secret-0123456789abcdefgh"
	region = "us-east-1"
)

var creds = credentials.NewStaticCredentialsProvider("AKIDCLIENTTEST", "client-test-secret-key", "")

// local is the local stack a business server talks to: the engines, the
// sandbox, the refresher and the API handler behind a server that checks
// SigV4 signatures as API Gateway would, and counts requests.
type local struct {
	t         *testing.T
	cfg       aws.Config
	sb        *wechattest.Server
	prefix    string
	refresher *refresh.Refresher
	api       *httptest.Server
	requests  atomic.Int32
	reads     atomic.Int32
	badSigs   atomic.Int32
}

func newLocal(t *testing.T, app registry.App) *local {
	t.Helper()
	cfg := awstest.Config(t, awstest.DynamoDB, awstest.SSM)
	sb := wechattest.NewServer(wechattest.Config{Clock: wechattest.NewClock(time.Now(), 0)})
	t.Cleanup(sb.Close)
	sb.AddApp(wechattest.App{AppID: app.AppID, Secret: secret, Kind: wechattest.OfficialAccount})
	l := &local{t: t, cfg: cfg, sb: sb, prefix: "/" + awstest.Name(t, "cl")}
	table := awstest.Table(t, cfg)
	ctx := context.Background()
	if _, err := ssm.NewFromConfig(cfg).PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(l.prefix + "/" + app.Name + "/secret"),
		Value: aws.String(secret), Type: ssmtypes.ParameterTypeSecureString}); err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: registry.Item(app)}); err != nil {
		t.Fatal(err)
	}
	l.refresher = &refresh.Refresher{
		Apps: registry.New(db, table), Store: tokenstore.New(ssm.NewFromConfig(cfg), l.prefix, ""), Leases: lease.New(db, table),
		WeChat: &wechat.Client{BaseURLs: []string{sb.URL}, Now: sb.Now, BaseDelay: time.Millisecond},
		Owner:  "api", Now: sb.Now,
	}
	h := api.New(l.refresher, slog.New(slog.DiscardHandler))
	l.api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.requests.Add(1)
		if err := verifySigV4(r); err != nil {
			l.badSigs.Add(1)
			http.Error(w, `{"message":"Forbidden"}`, http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(l.api.Close)
	return l
}

// signedOnly fails the test if the API saw a request without a valid
// signature.
func (l *local) signedOnly() {
	l.t.Helper()
	if n := l.badSigs.Load(); n != 0 {
		l.t.Errorf("%d requests were not correctly SigV4-signed", n)
	}
}

// verifySigV4 recomputes the request's signature with the test credentials
// over the headers it says it signed, as API Gateway does.
func verifySigV4(r *http.Request) error {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDCLIENTTEST/") || !strings.Contains(auth, "/"+region+"/execute-api/aws4_request") {
		return errors.New("Authorization " + auth + " is not a SigV4 signature for execute-api in " + region)
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return errors.New("no X-Amz-Date")
	}
	signed := auth[strings.Index(auth, "SignedHeaders=")+len("SignedHeaders="):]
	signed = signed[:strings.Index(signed, ",")]
	body := new(strings.Builder)
	if r.Body != nil {
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			body.Write(buf[:n])
			if err != nil {
				break
			}
		}
	}
	again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), strings.NewReader(body.String()))
	for _, h := range strings.Split(signed, ";") {
		if h != "host" {
			again.Header.Set(h, r.Header.Get(h))
		}
	}
	again.Header.Del("Authorization")
	sum := sha256Hex(body.String())
	c, _ := creds.Retrieve(context.Background())
	if err := v4.NewSigner().SignHTTP(context.Background(), c, again, sum, "execute-api", region, at); err != nil {
		return err
	}
	if again.Header.Get("Authorization") != auth {
		return errors.New("signature mismatch")
	}
	r.Body = http.NoBody
	if body.Len() > 0 {
		r.Body = readCloser{strings.NewReader(body.String())}
	}
	return nil
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

// countingSSM counts GetParameter calls.
type countingSSM struct {
	client.SSM
	n *atomic.Int32
}

func (c countingSSM) GetParameter(ctx context.Context, in *ssm.GetParameterInput, o ...func(*ssm.Options)) (*ssm.GetParameterOutput, error) {
	c.n.Add(1)
	return c.SSM.GetParameter(ctx, in, o...)
}

func (l *local) client(app string, now func() time.Time) *client.Client {
	return &client.Client{
		App: app, SSM: countingSSM{ssm.NewFromConfig(l.cfg), &l.reads}, Prefix: l.prefix,
		Endpoint: l.api.URL, Credentials: creds, Region: region, Now: now,
	}
}

func (l *local) publish() string {
	l.t.Helper()
	res, err := l.refresher.Refresh(context.Background(), "shop", "")
	if err != nil {
		l.t.Fatal(err)
	}
	return res.Token
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

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
	mu.Lock()
	now = now.Add(client.DefaultMaxAge)
	mu.Unlock()
	if _, err := c.Token(context.Background()); err != nil || l.reads.Load() != 2 {
		t.Errorf("after MaxAge: %d reads (%v), want 2: a superseded token must not outlive its grace", l.reads.Load(), err)
	}
	if l.requests.Load() != 0 {
		t.Errorf("%d API requests for reading a published token, want 0", l.requests.Load())
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
	if l.sb.Check(tok) != 0 || l.requests.Load() != 1 || l.sb.TokenCalls(appID) != 1 {
		t.Errorf("token valid: %v, API requests %d, WeChat calls %d; want a valid token from one request and one call",
			l.sb.Check(tok) == 0, l.requests.Load(), l.sb.TokenCalls(appID))
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
	if n := l.requests.Load(); n != 1 {
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
	c.Credentials = credentials.NewStaticCredentialsProvider("AKIDCLIENTTEST", "not-the-secret-key", "")
	_, err := c.Refresh(context.Background(), "")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || l.badSigs.Load() != 1 {
		t.Errorf("refresh with a wrong key: %v (bad signatures seen %d); want a 403 from the signature check", err, l.badSigs.Load())
	}
}

func mustToken(t *testing.T, l *local) string {
	t.Helper()
	tok, _, err := tokenstore.New(ssm.NewFromConfig(l.cfg), l.prefix, "").Get(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
