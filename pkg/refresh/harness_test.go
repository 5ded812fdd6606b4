package refresh_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

var t0 = time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC) // 10:00 in Beijing

// bed is one test's world: the sandbox (frozen clock), a fresh table and
// parameter prefix in the local engines, and a log that is scanned for
// secrets and tokens when the test ends.
type bed struct {
	t       *testing.T
	sb      *wechattest.Server
	cfg     aws.Config
	table   string
	prefix  string
	logs    *syncBuffer
	logw    io.Writer // logs, and the leak scan's sink
	mu      sync.Mutex
	secrets []string
	seen    []string // tokens handed out, to look for in the logs
}

func newBed(t *testing.T, sbCfg wechattest.Config) *bed {
	t.Helper()
	cfg := awstest.Config(t, awstest.DynamoDB, awstest.SSM)
	if sbCfg.Clock == nil {
		sbCfg.Clock = wechattest.NewClock(t0, 0)
	}
	b := &bed{
		t:      t,
		sb:     wechattest.NewServer(sbCfg),
		cfg:    cfg,
		table:  awstest.Table(t, cfg),
		prefix: "/" + awstest.Name(t, "wx"),
		logs:   &syncBuffer{},
	}
	b.logw = io.MultiWriter(b.logs, leakscan.Sink(t, "refresher"))
	t.Cleanup(b.sb.Close)
	t.Cleanup(b.scanLogs)
	return b
}

// app registers an app in the sandbox, its secret in SSM and its item in
// the table.
func (b *bed) app(a registry.App) registry.App {
	b.t.Helper()
	secret := "secret-" + a.Name + "-0123456789abcdefghij"
	kind := wechattest.Kind(a.Kind)
	b.sb.AddApp(wechattest.App{AppID: a.AppID, Secret: secret, Kind: kind})
	b.putSecret(a.Name, secret)
	b.putItem(a)
	return a
}

func (b *bed) putSecret(name, secret string) {
	b.t.Helper()
	b.mu.Lock()
	b.secrets = append(b.secrets, secret)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := ssm.NewFromConfig(b.cfg).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(b.prefix + "/" + name + "/secret"), Value: aws.String(secret),
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true),
	})
	if err != nil {
		b.t.Fatalf("put secret: %v", err)
	}
}

func (b *bed) putItem(a registry.App) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := dynamodb.NewFromConfig(b.cfg).PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(b.table), Item: registry.Item(a)}); err != nil {
		b.t.Fatalf("register %s: %v", a.Name, err)
	}
}

// refresher returns a refresher with SDK clients and an HTTP pool of its own,
// as a separate Lambda instance would have.
func (b *bed) refresher(owner string, tune ...func(*refresh.Refresher)) *refresh.Refresher {
	return b.refresherVia(owner, b.sb.URL, nil, nil, tune...)
}

// refresherVia is refresher with WeChat at wechatURL and the SDK clients'
// options amended by ddbOpt and ssmOpt (nil: none), for tests that put a
// proxy in between.
func (b *bed) refresherVia(owner, wechatURL string, ddbOpt func(*dynamodb.Options), ssmOpt func(*ssm.Options), tune ...func(*refresh.Refresher)) *refresh.Refresher {
	db := dynamodb.NewFromConfig(b.cfg, func(o *dynamodb.Options) {
		o.HTTPClient = awshttp.NewBuildableClient()
		if ddbOpt != nil {
			ddbOpt(o)
		}
	})
	sc := ssm.NewFromConfig(b.cfg, func(o *ssm.Options) {
		o.HTTPClient = awshttp.NewBuildableClient()
		if ssmOpt != nil {
			ssmOpt(o)
		}
	})
	r := &refresh.Refresher{
		Apps:   registry.New(db, b.table),
		Store:  tokenstore.New(sc, b.prefix, ""),
		Leases: lease.New(db, b.table),
		WeChat: &wechat.Client{BaseURLs: []string{wechatURL}, WeComBaseURLs: []string{wechatURL}, Now: b.sb.Now,
			BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
		Owner:  owner,
		Now:    b.sb.Now,
		Logger: slog.New(slog.NewJSONHandler(b.logw, &slog.HandlerOptions{Level: slog.LevelDebug})).With("owner", owner),
	}
	for _, f := range tune {
		f(r)
	}
	return r
}

// published reads the app's token and version straight from SSM.
func (b *bed) published(app string) (string, int64) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, v, err := tokenstore.New(ssm.NewFromConfig(b.cfg), b.prefix, "").Get(ctx, app)
	if err != nil {
		b.t.Fatalf("read published token of %s: %v", app, err)
	}
	b.saw(tok)
	return tok, v
}

func (b *bed) state(app string) lease.State {
	b.t.Helper()
	st, err := lease.New(newDynamo(b), b.table).Get(context.Background(), app)
	if err != nil {
		b.t.Fatal(err)
	}
	return st
}

func newDynamo(b *bed) *dynamodb.Client { return dynamodb.NewFromConfig(b.cfg) }

func (b *bed) saw(tokens ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = append(b.seen, tokens...)
}

// scanLogs fails the test if any secret or token reached the refresher's logs.
func (b *bed) scanLogs() {
	logs := b.logs.String()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.secrets {
		if strings.Contains(logs, s) {
			b.t.Errorf("a secret appears in the refresher's logs")
		}
	}
	if len(logs) == 0 {
		return
	}
	for _, tok := range append(b.seen, b.sb.Issued()...) {
		if tok != "" && strings.Contains(logs, tok) {
			b.t.Errorf("a token (fp %s) appears in the refresher's logs", wechat.Fingerprint(tok))
		}
	}
}

// logged reports whether some log line contains every one of parts.
func (b *bed) logged(parts ...string) bool {
	for _, line := range strings.Split(b.logs.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func mustRefreshDue(t *testing.T, r *refresh.Refresher) refresh.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := r.RefreshDue(ctx)
	if err != nil {
		t.Fatalf("RefreshDue: %v", err)
	}
	for _, o := range rep.Outcomes {
		if o.Status == "failed" {
			t.Logf("app %s failed: %v", o.App, o.Err)
		}
	}
	return rep
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func appNamed(name string, kind registry.Kind, mode registry.Mode) registry.App {
	return registry.App{Name: name, AppID: fmt.Sprintf("wx%016x", hash(name)), Kind: kind, Mode: mode}
}

func hash(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
