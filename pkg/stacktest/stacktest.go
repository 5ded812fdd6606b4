// Package stacktest runs wxtoken's local stack for tests of what sits on
// top of it (consumers, snippets, benchmarks): a fresh table and parameter
// prefix in the test bed's engines, a WeChat sandbox, the refresher, and the
// HTTP API handler behind a server that checks SigV4 signatures as API
// Gateway does and counts requests.
//
// Like pkg/awstest, it skips (or, under `make test`, fails) when the test
// bed's engines are not running.
package stacktest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
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
	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// Credentials the API server accepts signatures from, and their region.
const (
	AccessKeyID     = "AKIDSTACKTEST"
	SecretAccessKey = "stacktest-secret-access-key"
	Region          = "us-east-1"
)

// Creds are the credentials the API server verifies signatures with.
var Creds = credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, "")

// Stack is one test's local wxtoken.
type Stack struct {
	Cfg       aws.Config
	Sandbox   *wechattest.Server
	Table     string
	Prefix    string
	Refresher *refresh.Refresher
	// APIURL is the base URL of the API (SigV4 required).
	APIURL string
	// Requests counts API requests; BadSignatures those refused with 403.
	Requests, BadSignatures atomic.Int32
	// Secrets holds every registered secret, for leak checks.
	Secrets []string

	tb testing.TB
}

// Options tune New.
type Options struct {
	// Prefix is the parameter prefix; empty means a unique one.
	Prefix string
	// Sandbox configures the WeChat sandbox; a nil Clock means a frozen
	// clock at the real time.
	Sandbox wechattest.Config
}

// New starts a stack and registers apps, each with a secret derived from
// its name. Everything is stopped when tb ends.
func New(tb testing.TB, opts Options, apps ...registry.App) *Stack {
	tb.Helper()
	cfg := awstest.Config(tb, awstest.DynamoDB, awstest.SSM)
	if opts.Sandbox.Clock == nil {
		opts.Sandbox.Clock = wechattest.NewClock(time.Now(), 0)
	}
	sb := wechattest.NewServer(opts.Sandbox)
	tb.Cleanup(sb.Close)
	s := &Stack{Cfg: cfg, Sandbox: sb, Table: awstest.Table(tb, cfg), Prefix: opts.Prefix, tb: tb}
	if s.Prefix == "" {
		s.Prefix = "/" + awstest.Name(tb, "st")
	}
	db := dynamodb.NewFromConfig(cfg)
	store := tokenstore.New(ssm.NewFromConfig(cfg), s.Prefix, "")
	for _, a := range apps {
		s.Register(a)
	}
	s.Refresher = &refresh.Refresher{
		Apps: registry.New(db, s.Table), Store: store, Leases: lease.New(db, s.Table),
		WeChat: &wechat.Client{BaseURLs: []string{sb.URL}, WeComBaseURLs: []string{sb.URL}, Now: sb.Now, BaseDelay: time.Millisecond},
		Owner:  "stacktest", Now: sb.Now,
	}
	h := api.New(s.Refresher, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Requests.Add(1)
		if err := VerifySigV4(r); err != nil {
			s.BadSignatures.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"message":"Forbidden"}`)
			return
		}
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	s.APIURL = srv.URL
	return s
}

// Register adds app to the sandbox, its secret to SSM and its item to the
// table.
func (s *Stack) Register(a registry.App) {
	s.tb.Helper()
	secret := "secret-" + a.Name + "-0123456789abcdefghij"
	kind := wechattest.Kind(a.Kind)
	s.Sandbox.AddApp(wechattest.App{AppID: a.AppID, Secret: secret, Kind: kind})
	s.Secrets = append(s.Secrets, secret)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ssm.NewFromConfig(s.Cfg).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(s.Prefix + "/" + a.Name + "/secret"), Value: aws.String(secret),
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true),
	}); err != nil {
		s.tb.Fatalf("stacktest: put secret of %s: %v", a.Name, err)
	}
	if _, err := dynamodb.NewFromConfig(s.Cfg).PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.Table), Item: registry.Item(a)}); err != nil {
		s.tb.Fatalf("stacktest: register %s: %v", a.Name, err)
	}
}

// Publish refreshes app (a token is published if none is) and returns the
// published token.
func (s *Stack) Publish(app string) string {
	s.tb.Helper()
	res, err := s.Refresher.Refresh(context.Background(), app, "")
	if err != nil {
		s.tb.Fatalf("stacktest: publish %s: %v", app, err)
	}
	return res.Token
}

// Published reads app's token and Version from SSM.
func (s *Stack) Published(app string) (string, int64) {
	s.tb.Helper()
	tok, v, err := tokenstore.New(ssm.NewFromConfig(s.Cfg), s.Prefix, "").Get(context.Background(), app)
	if err != nil {
		s.tb.Fatalf("stacktest: read %s: %v", app, err)
	}
	return tok, v
}

// VerifySigV4 recomputes r's SigV4 signature (service execute-api, Region,
// Creds) over the headers it says it signed, as API Gateway does, and
// restores r's body for the handler.
func VerifySigV4(r *http.Request) error {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+AccessKeyID+"/") || !strings.Contains(auth, "/"+Region+"/execute-api/aws4_request") {
		return errors.New("not a SigV4 signature for execute-api in " + Region)
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return errors.New("no X-Amz-Date")
	}
	_, signed, ok := strings.Cut(auth, "SignedHeaders=")
	if !ok {
		return errors.New("no SignedHeaders")
	}
	signed, _, _ = strings.Cut(signed, ",")
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return err
	}
	again, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	for _, h := range strings.Split(signed, ";") {
		if h != "host" {
			again.Header.Set(h, r.Header.Get(h))
		}
	}
	again.Header.Del("Authorization")
	sum := sha256.Sum256(body)
	c, _ := Creds.Retrieve(context.Background())
	if err := v4.NewSigner().SignHTTP(context.Background(), c, again, hex.EncodeToString(sum[:]), "execute-api", Region, at); err != nil {
		return err
	}
	if again.Header.Get("Authorization") != auth {
		return errors.New("signature mismatch")
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	return nil
}
