package refresh_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/registry/registrytest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
	"github.com/wxtoken/wxtoken/pkg/testsupport/syncbuf"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

var t0 = time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC) // 10:00 in Beijing

// bed is one test's world: the sandbox (frozen clock), the AWS side and a
// log that is scanned for secrets and tokens when the test ends. The AWS side
// is the local engines (a fresh table and parameter prefix in DynamoDB Local
// and moto) when the test bed is running, as under make test, and the
// in-memory fakes otherwise, so that `go test ./pkg/refresh/` runs the
// protocol and policy tests without engines. (The fakes are kept honest by
// the contract suites in leasetest, tokenstoretest and registrytest.)
type bed struct {
	t       *testing.T
	sb      *wechattest.Server
	cfg     aws.Config
	table   string
	prefix  string
	fakes   *fakeAWS // nil: the engines
	logs    *syncbuf.Buffer
	logw    io.Writer // logs, and the leak scan's sink
	mu      sync.Mutex
	secrets []string
	seen    []string // tokens handed out, to look for in the logs
	seenSet map[string]bool
}

// fakeAWS is the AWS side of a bed without engines.
type fakeAWS struct {
	leases *leasetest.Fake
	store  *tokenstoretest.Fake
	apps   *registrytest.Fake
}

// useEngines reports whether tests run against the local engines: when the
// test bed announced them, or requires them (then awstest.Config fails a
// test whose engine is missing).
func useEngines() bool {
	return os.Getenv(awstest.EndpointEnv(awstest.DynamoDB)) != "" || os.Getenv(awstest.EndpointEnv(awstest.SSM)) != "" ||
		os.Getenv(awstest.RequiredEnv) == "required"
}

func newBed(t *testing.T, sbCfg wechattest.Config) *bed {
	t.Helper()
	return newBedOn(t, sbCfg, useEngines())
}

// newFakeBed is a bed on the in-memory fakes even when the engines run, for
// tests that inject faults through the fakes' hooks.
func newFakeBed(t *testing.T, sbCfg wechattest.Config) *bed {
	t.Helper()
	return newBedOn(t, sbCfg, false)
}

func newBedOn(t *testing.T, sbCfg wechattest.Config, engines bool) *bed {
	t.Helper()
	if sbCfg.Clock == nil {
		sbCfg.Clock = wechattest.NewClock(t0, 0)
	}
	b := &bed{t: t, sb: wechattest.NewServer(sbCfg), logs: &syncbuf.Buffer{}, prefix: "/" + awstest.Name(t, "wx")}
	if engines {
		b.cfg = awstest.Config(t, awstest.DynamoDB, awstest.SSM)
		b.table = awstest.Table(t, b.cfg)
	} else {
		b.fakes = &fakeAWS{leases: leasetest.New(), store: tokenstoretest.New(b.prefix), apps: registrytest.New()}
	}
	b.logw = io.MultiWriter(b.logs, leakscan.Sink(t, "refresher"))
	t.Cleanup(b.sb.Close)
	t.Cleanup(b.scanLogs)
	return b
}

// needEngines skips a test that drives the engines through a fault-injecting
// proxy when they are absent (under make test they are always present).
func (b *bed) needEngines() {
	b.t.Helper()
	if b.fakes != nil {
		b.t.Skip("drives DynamoDB Local and moto through a fault-injecting proxy; run it under make test")
	}
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
	if b.fakes != nil {
		b.fakes.store.PutSecret(name, secret)
		return
	}
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
	b.putRawItem(a.Name, registry.Item(a))
}

// putRawItem stores an app item as it is, malformed or not.
func (b *bed) putRawItem(name string, item map[string]ddbtypes.AttributeValue) {
	b.t.Helper()
	if b.fakes != nil {
		b.fakes.apps.PutItem(name, item)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := dynamodb.NewFromConfig(b.cfg).PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(b.table), Item: item}); err != nil {
		b.t.Fatalf("register %s: %v", name, err)
	}
}

// removeApp deletes an app's registration (its state stays).
func (b *bed) removeApp(name string) {
	b.t.Helper()
	if b.fakes != nil {
		b.fakes.apps.Remove(name)
		return
	}
	_, err := newDynamo(b).DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(b.table),
		Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "app#" + name}}})
	if err != nil {
		b.t.Fatalf("remove %s: %v", name, err)
	}
}

// leases is the lease table the refreshers share.
func (b *bed) leases() refresh.Leases {
	if b.fakes != nil {
		return b.fakes.leases
	}
	return lease.New(newDynamo(b), b.table)
}

// tokens is the token store the refreshers share.
func (b *bed) tokens() refresh.Store {
	if b.fakes != nil {
		return b.fakes.store
	}
	return tokenstore.New(ssm.NewFromConfig(b.cfg), b.prefix, "")
}

// deleteState removes an app's state item (a new table over an existing
// parameter prefix).
func (b *bed) deleteState(app string) {
	b.t.Helper()
	if b.fakes != nil {
		b.fakes.leases.Delete(app)
		return
	}
	_, err := newDynamo(b).DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(b.table),
		Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "state#" + app}}})
	if err != nil {
		b.t.Fatalf("delete the state of %s: %v", app, err)
	}
}

// refresher returns a refresher with SDK clients and an HTTP pool of its own,
// as a separate Lambda instance would have (on the fakes, sharing them as
// instances share the table and the parameters).
func (b *bed) refresher(owner string, tune ...func(*refresh.Refresher)) *refresh.Refresher {
	if b.fakes != nil {
		r := b.newRefresher(owner, b.sb.URL)
		r.Apps, r.Store, r.Leases = b.fakes.apps, b.fakes.store, b.fakes.leases
		for _, f := range tune {
			f(r)
		}
		return r
	}
	return b.refresherVia(owner, b.sb.URL, nil, nil, tune...)
}

func (b *bed) newRefresher(owner, wechatURL string) *refresh.Refresher {
	return &refresh.Refresher{
		WeChat: &wechat.Client{BaseURLs: []string{wechatURL}, WeComBaseURLs: []string{wechatURL}, Now: b.sb.Now,
			BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
		Owner:  owner,
		Now:    b.sb.Now,
		Logger: slog.New(slog.NewJSONHandler(b.logw, &slog.HandlerOptions{Level: slog.LevelDebug})).With("owner", owner),
	}
}

// refresherVia is refresher with WeChat at wechatURL and the SDK clients'
// options amended by ddbOpt and ssmOpt (nil: none), for tests that put a
// proxy in between. It needs the engines.
func (b *bed) refresherVia(owner, wechatURL string, ddbOpt func(*dynamodb.Options), ssmOpt func(*ssm.Options), tune ...func(*refresh.Refresher)) *refresh.Refresher {
	b.needEngines()
	// The refresher signs each call as the function whose entry point made
	// it, so the IAM check evaluates it against that function's role.
	cfg := awstest.AsEntryPoint(b.cfg)
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.HTTPClient = awshttp.NewBuildableClient()
		if ddbOpt != nil {
			ddbOpt(o)
		}
	})
	sc := ssm.NewFromConfig(cfg, func(o *ssm.Options) {
		o.HTTPClient = awshttp.NewBuildableClient()
		if ssmOpt != nil {
			ssmOpt(o)
		}
	})
	r := b.newRefresher(owner, wechatURL)
	r.Apps, r.Store, r.Leases = registry.New(db, b.table), tokenstore.New(sc, b.prefix, ""), lease.New(db, b.table)
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
	tok, v, err := b.tokens().Get(ctx, app)
	if err != nil {
		b.t.Fatalf("read published token of %s: %v", app, err)
	}
	b.saw(tok)
	return tok, v
}

func (b *bed) state(app string) lease.State {
	b.t.Helper()
	st, err := b.leases().Get(context.Background(), app)
	if err != nil {
		b.t.Fatal(err)
	}
	return st
}

func newDynamo(b *bed) *dynamodb.Client { return dynamodb.NewFromConfig(b.cfg) }

func (b *bed) saw(tokens ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seenSet == nil {
		b.seenSet = map[string]bool{}
	}
	for _, tok := range tokens {
		// Once each: a simulated day reads the same few tokens thousands
		// of times, and each is looked for in the whole log.
		if !b.seenSet[tok] {
			b.seenSet[tok] = true
			b.seen = append(b.seen, tok)
		}
	}
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
