// Package stacktest runs wxtoken's local stack for tests of what sits on
// top of it (consumers, snippets, benchmarks): a fresh table and parameter
// prefix in the test bed's engines, a WeChat sandbox, the refresher, and the
// HTTP API handler behind a server that checks SigV4 signatures as API
// Gateway does and counts requests.
//
// Like pkg/testsupport/awstest, it skips (or, under `make test`, fails) when the test
// bed's engines are not running.
package stacktest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/api"
	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
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
	// LastSignatureError is why the last refused request was refused.
	LastSignatureError atomic.Value

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
	// The refresher signs each call as the function whose entry point made
	// it (the API handler's Refresh, ForceRefresh and Status; a test's
	// RefreshDue), so the IAM check evaluates it against that function's role.
	db := dynamodb.NewFromConfig(awstest.AsEntryPoint(cfg))
	store := tokenstore.New(ssm.NewFromConfig(awstest.AsEntryPoint(cfg)), s.Prefix, "")
	for _, a := range apps {
		s.Register(a)
	}
	// Logs go to the leak scan (pkg/testsupport/leakscan) when it runs, at debug level.
	logger := slog.New(slog.DiscardHandler)
	if sink := leakscan.Sink(tb, "stack"); sink != io.Discard {
		logger = slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s.Refresher = &refresh.Refresher{
		Apps: registry.New(db, s.Table), Store: store, Leases: lease.New(db, s.Table),
		WeChat: &wechat.Client{BaseURLs: []string{sb.URL}, WeComBaseURLs: []string{sb.URL}, Now: sb.Now, BaseDelay: time.Millisecond, Logger: logger},
		Owner:  "stacktest", Now: sb.Now, Logger: logger,
	}
	h := api.New(s.Refresher, logger)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Requests.Add(1)
		if err := VerifySigV4(r); err != nil {
			s.BadSignatures.Add(1)
			s.LastSignatureError.Store(err.Error())
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

// PublishTicket refreshes app's ticket t (published if none is) and returns
// the published ticket.
func (s *Stack) PublishTicket(app string, t registry.Ticket) string {
	s.tb.Helper()
	res, err := s.Refresher.RefreshTicket(context.Background(), app, t, "")
	if err != nil {
		s.tb.Fatalf("stacktest: publish %s's %s ticket: %v", app, t, err)
	}
	return res.Token
}

// PublishedTicket reads app's ticket t from SSM.
func (s *Stack) PublishedTicket(app string, t registry.Ticket) string {
	s.tb.Helper()
	key := registry.Credential{App: app, Ticket: t}.Key()
	v, _, err := tokenstore.New(ssm.NewFromConfig(s.Cfg), s.Prefix, "").Get(context.Background(), key)
	if err != nil {
		s.tb.Fatalf("stacktest: read %s's %s ticket: %v", app, t, err)
	}
	return v
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

// VerifySigV4 checks r's SigV4 signature (service execute-api, Region,
// Creds) the way API Gateway does: it rebuilds the canonical request from
// the headers the signature names, derives the signing key and compares. It
// restores r's body for the handler.
func VerifySigV4(r *http.Request) error {
	auth := r.Header.Get("Authorization")
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(auth, algo) {
		return errors.New("no SigV4 Authorization header")
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(auth, algo), ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok {
			fields[k] = v
		}
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 5 || cred[0] != AccessKeyID || cred[2] != Region || cred[3] != "execute-api" || cred[4] != "aws4_request" {
		return fmt.Errorf("credential scope %q is not %s/<date>/%s/execute-api/aws4_request", fields["Credential"], AccessKeyID, Region)
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if at, err := time.Parse("20060102T150405Z", amzDate); err != nil || !strings.HasPrefix(amzDate, cred[1]) {
		return errors.New("X-Amz-Date missing or not on the credential's date")
	} else if d := time.Since(at); d > 15*time.Minute || d < -15*time.Minute {
		return errors.New("X-Amz-Date more than 15 minutes off")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	signed := strings.Split(fields["SignedHeaders"], ";")
	if !slices.Contains(signed, "host") {
		return errors.New("host is not signed")
	}
	var canonHeaders strings.Builder
	for _, h := range signed {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = strconv.FormatInt(r.ContentLength, 10)
		default:
			v = strings.Join(r.Header.Values(h), ",")
		}
		canonHeaders.WriteString(h + ":" + strings.Join(strings.Fields(v), " ") + "\n")
	}
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payload {
		return errors.New("x-amz-content-sha256 does not match the body")
	}
	canonical := strings.Join([]string{r.Method, r.URL.EscapedPath(), canonicalQuery(r.URL.Query()),
		canonHeaders.String(), fields["SignedHeaders"], payload}, "\n")
	scope := strings.Join(cred[1:], "/")
	creq := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(creq[:])
	key := []byte("AWS4" + SecretAccessKey)
	for _, part := range cred[1:] {
		key = hmacSHA256(key, part)
	}
	if want := hex.EncodeToString(hmacSHA256(key, toSign)); !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return errors.New("signature mismatch")
	}
	return nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func canonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v))
		}
	}
	sort.Strings(parts)
	return strings.ReplaceAll(strings.Join(parts, "&"), "+", "%20")
}
