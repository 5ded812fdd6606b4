// Command dev runs wxtoken on one machine (`make dev`): against the local AWS
// engines that infra/local/testbed starts and exports (DynamoDB Local, moto),
// with the WeChat sandbox on 127.0.0.1:8081 (or the real WeChat), a
// registered demo app, the scheduled refresh ticking, and the HTTP API on
// http://127.0.0.1:8080 — served by the same pkg/api handler and
// pkg/schedule handler, wired by the same pkg/config code, as in Lambda.
//
// Usage (make dev runs it under the test bed):
//
//	dev [-addr 127.0.0.1:8080] [-sandbox-addr 127.0.0.1:8081] [-every 1m] [-app demo]
//	dev -token demo      print the token published for an app (reads .cache/dev/env)
//	dev -token demo -ticket jsapi   print the app's published jsapi_ticket
//	dev -sign URL [-app demo]       sign URL for wx.config with the app's jsapi_ticket
//
// With WXTOKEN_DEV_WECHAT=real, WXTOKEN_DEV_APPID and WXTOKEN_DEV_SECRET set
// (and optionally WXTOKEN_DEV_KIND, WXTOKEN_DEV_MODE), the demo app is that
// real account and the refresher calls the real WeChat API; the secret is
// stored in the local SSM only and never printed. Mind that in classic mode
// every refresh invalidates the token your other servers hold.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/api"
	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/config"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/schedule"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const (
	table      = "wxtoken-dev"
	prefix     = "/wxtoken"
	demoAppID  = "wxdemo0000000001"
	demoSecret = "demosecret"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "dev: %v\n", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, printing to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address of the HTTP API")
	sandboxAddr := fs.String("sandbox-addr", "127.0.0.1:8081", "listen address of the WeChat sandbox")
	every := fs.Duration("every", time.Minute, "how often the scheduled refresh runs (the template's ScheduleRate)")
	app := fs.String("app", "demo", "name of the demo app to register")
	token := fs.String("token", "", "print the token published for this app and exit (needs a running make dev)")
	ticket := fs.String("ticket", "", "with -token: print this ticket of the app instead (jsapi, wx_card, agent_config)")
	sign := fs.String("sign", "", "print a wx.config signature of this page URL with the app's (-app) published jsapi_ticket and exit")
	stateDir := fs.String("state", ".cache/dev", "directory for the function log and the engines' endpoints (env)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *token != "" {
		return printToken(ctx, *stateDir, registry.Credential{App: *token, Ticket: registry.Ticket(*ticket)}, out)
	}
	if *sign != "" {
		return printSignature(ctx, *stateDir, *app, *sign, out)
	}
	if os.Getenv("AWS_ENDPOINT_URL_DYNAMODB") == "" || os.Getenv("AWS_ENDPOINT_URL_SSM") == "" {
		return errors.New("the local AWS engines are not running: start this with `make dev`, which runs it under the test bed")
	}
	if !registry.ValidName(*app) {
		return fmt.Errorf("-app %q is not a valid app name", *app)
	}
	if *every < 5*time.Second {
		return errors.New("-every must be at least 5s")
	}

	// Listen first, so that a busy port fails fast and clearly.
	apiLn, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("the API cannot listen on %s (is another make dev running?): %w", *addr, err)
	}
	defer apiLn.Close()

	wx, err := wechatSide(*sandboxAddr)
	if err != nil {
		return err
	}
	defer wx.close()

	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("AWS configuration: %w", err)
	}
	if err := setUp(ctx, awsCfg, *app, wx); err != nil {
		return err
	}

	// The same configuration path as the Lambda functions.
	env := map[string]string{
		config.EnvTable: table, config.EnvParameterPrefix: prefix, config.EnvService: "wxtoken-dev",
		config.EnvLeaseSeconds: "60", config.EnvLogLevel: "debug",
	}
	if wx.url != "" {
		env[config.EnvWeChatBaseURLs], env[config.EnvWeComBaseURLs] = wx.url, wx.url
	}
	cfg, err := config.FromEnv(func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*stateDir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(*stateDir, "functions.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	deps := cfg.BuildWith(awsCfg, logFile)
	if err := writeEnv(*stateDir, "http://"+apiLn.Addr().String(), wx.url); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(*stateDir, "env"))

	srv := &http.Server{Handler: api.New(deps.Refresher, deps.Logger), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(apiLn) }()

	sched := &schedule.Handler{Refresher: deps.Refresher, Metrics: deps.Metrics, Logger: deps.Logger}
	tick := func() {
		runCtx, cancel := context.WithTimeout(ctx, 50*time.Second) // the function's timeout
		defer cancel()
		ev := fmt.Sprintf(`{"id":"dev-%d","detail-type":"Scheduled Event","source":"aws.events","time":%q}`,
			time.Now().Unix(), time.Now().UTC().Format(time.RFC3339))
		sum, err := sched.Handle(runCtx, []byte(ev))
		line := fmt.Sprintf("dev: %s scheduled run: %d app(s) %v", time.Now().Format("15:04:05"), sum.Apps, sum.Counts)
		if err != nil {
			line += " — " + err.Error()
		}
		fmt.Fprintln(out, line)
	}
	tick()
	banner(out, apiLn.Addr().String(), *app, wx, logPath, *every, *stateDir)

	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			tick()
		case err := <-errc:
			return fmt.Errorf("API server: %w", err)
		case <-ctx.Done():
			fmt.Fprintln(out, "\ndev: stopping")
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
			return nil
		}
	}
}

// wechat is the WeChat the refresher talks to: the sandbox (url set) or the
// real one.
type wechat struct {
	url, appID, secret, kind, mode string
	sandbox                        *http.Server
}

func (w *wechat) close() {
	if w.sandbox != nil {
		_ = w.sandbox.Close()
	}
}

func wechatSide(addr string) (*wechat, error) {
	if os.Getenv("WXTOKEN_DEV_WECHAT") == "real" {
		w := &wechat{appID: os.Getenv("WXTOKEN_DEV_APPID"), secret: os.Getenv("WXTOKEN_DEV_SECRET"),
			kind: os.Getenv("WXTOKEN_DEV_KIND"), mode: os.Getenv("WXTOKEN_DEV_MODE")}
		if w.appID == "" || w.secret == "" {
			return nil, errors.New("WXTOKEN_DEV_WECHAT=real needs WXTOKEN_DEV_APPID and WXTOKEN_DEV_SECRET")
		}
		return w, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("the WeChat sandbox cannot listen on %s: %w", addr, err)
	}
	sb := wechattest.New(wechattest.Config{}, wechattest.App{AppID: demoAppID, Secret: demoSecret, Kind: wechattest.OfficialAccount})
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &wechat{url: "http://" + ln.Addr().String(), appID: demoAppID, secret: demoSecret, sandbox: srv}, nil
}

// setUp creates the table and registers the demo app (idempotent: the
// engines are in memory, but a rerun against a kept engine must work too).
func setUp(ctx context.Context, cfg aws.Config, app string, wx *wechat) error {
	db := dynamodb.NewFromConfig(cfg)
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	var inUse *ddbtypes.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create table %s: %w", table, err)
	}
	if _, err := ssm.NewFromConfig(cfg).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(tokenstore.New(nil, prefix, "").SecretName(app)), Value: aws.String(wx.secret),
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true),
	}); err != nil {
		return fmt.Errorf("store the demo secret: %w", err)
	}
	a := registry.App{Name: app, AppID: wx.appID, Kind: registry.OfficialAccount, Mode: registry.Stable}
	if wx.kind != "" {
		a.Kind = registry.Kind(wx.kind)
	}
	if a.Kind != registry.MiniProgram {
		// The JS-SDK ticket, kept fresh beside the token.
		a.Tickets = registry.TicketSetOf(registry.TicketJSAPI)
	}
	if wx.mode != "" {
		a.Mode = registry.Mode(wx.mode)
	}
	if a.Kind == registry.WeCom {
		a.Mode = registry.GetToken
	}
	if _, err := registry.Decode(app, registry.Item(a)); err != nil {
		return fmt.Errorf("demo app: %w", err)
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: registry.Item(a)}); err != nil {
		return fmt.Errorf("register the demo app: %w", err)
	}
	if wx.sandbox != nil {
		// A new sandbox knows none of the tokens an earlier run left in
		// engines that outlived it: start the app afresh.
		for _, key := range []string{app, registry.Credential{App: app, Ticket: registry.TicketJSAPI}.Key()} {
			if _, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table),
				Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "state#" + key}}}); err != nil {
				return fmt.Errorf("reset the demo app's state: %w", err)
			}
			var nf *ssmtypes.ParameterNotFound
			if _, err := ssm.NewFromConfig(cfg).DeleteParameter(ctx, &ssm.DeleteParameterInput{
				Name: aws.String(tokenstore.New(nil, prefix, "").TokenName(key))}); err != nil && !errors.As(err, &nf) {
				return fmt.Errorf("reset the demo app's token and ticket: %w", err)
			}
		}
	}
	return nil
}

// writeEnv records the engines' endpoints, the table, the prefix, the API
// URL and the WeChat sandbox's ("" for the real WeChat) for `dev -token`,
// `wxtoken --local` (infra/wxtoken) and other shells.
func writeEnv(stateDir, apiURL, wechatURL string) error {
	var b strings.Builder
	for _, k := range []string{"AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SSM", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		fmt.Fprintf(&b, "export %s=%s\n", k, os.Getenv(k))
	}
	// What `wxtoken --local` (infra/wxtoken) works against.
	fmt.Fprintf(&b, "export %s=%s\nexport %s=%s\nexport %s=%s\n", config.EnvTable, table, config.EnvParameterPrefix, prefix, config.EnvAPIURL, apiURL)
	if wechatURL != "" {
		fmt.Fprintf(&b, "export %s=%s\n", config.EnvWeChatBaseURLs, wechatURL)
	}
	return os.WriteFile(filepath.Join(stateDir, "env"), []byte(b.String()), 0o644)
}

func banner(out io.Writer, addr, app string, wx *wechat, logPath string, every time.Duration, stateDir string) {
	base := "http://" + addr
	side := "the WeChat sandbox on " + wx.url + " (app " + wx.appID + ")"
	if wx.url == "" {
		side = "the real WeChat API (app " + wx.appID + ")"
	}
	fmt.Fprintf(out, `
wxtoken is running locally
  API:        %[1]s   (the same handler as the Lambda function; no SigV4 locally)
  WeChat:     %[2]s
  AWS:        DynamoDB Local %[3]s, moto (SSM) %[4]s, table %[5]s, prefix %[6]s
  schedule:   every %[7]s;  function logs and metrics: %[8]s

Try:
  curl -s -X POST %[1]s/v1/apps/%[9]s/refresh                       # the published token
  curl -s -X POST %[1]s/v1/apps/%[9]s/refresh -d '{"stale_token":"TOKEN"}'  # WeChat rejected TOKEN: refresh once
  curl -s %[1]s/v1/apps/%[9]s                                       # status: metadata, never the token
  make dev-token APP=%[9]s                                          # the token published in the local SSM
  make dev-token APP=%[9]s TICKET=jsapi                             # its jsapi_ticket, kept fresh beside it
  curl -s -X POST %[1]s/v1/apps/%[9]s/tickets/jsapi/refresh -d '{"stale_ticket":"TICKET"}'  # a page said "invalid signature"
  make dev-sign URL='https://example.com/page?x=1'                  # a wx.config signature with that ticket
  go run ./infra/wxtoken --local apps list                          # the operator command (README: Registering an app)
  # or with the AWS CLI, in another shell:
  source %[10]s && aws ssm get-parameter --with-decryption --name %[6]s/%[9]s/access_token --query Parameter.Value --output text

Ctrl-C stops everything.

`, base, side, os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"), os.Getenv("AWS_ENDPOINT_URL_SSM"), table, prefix, every, logPath, app,
		filepath.Join(stateDir, "env"))
}

// printToken reads the published token (or ticket) of a credential from the
// running dev stack.
func printToken(ctx context.Context, stateDir string, c registry.Credential, out io.Writer) error {
	store, err := devStore(ctx, stateDir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tok, version, err := store.Get(ctx, c.Key())
	if err != nil {
		return fmt.Errorf("read the %s of %s (is make dev running?): %w", c.ParameterLeaf(), c.App, err)
	}
	fmt.Fprintf(os.Stderr, "%s, version %d:\n", store.TokenName(c.Key()), version)
	fmt.Fprintln(out, tok)
	return nil
}

// printSignature signs pageURL for wx.config with the app's published
// jsapi_ticket and prints what the page passes to wx.config.
func printSignature(ctx context.Context, stateDir, app, pageURL string, out io.Writer) error {
	store, err := devStore(ctx, stateDir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	key := registry.Credential{App: app, Ticket: registry.TicketJSAPI}.Key()
	ticket, _, err := store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read the jsapi_ticket of %s (is make dev running, and does %s have the jsapi ticket?): %w", app, app, err)
	}
	sig, err := client.NewJSSDKSignature(ticket, pageURL, time.Now())
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(sig)
}

// devStore is the token store of the running dev stack, whose engines'
// endpoints its env file names.
func devStore(ctx context.Context, stateDir string) (*tokenstore.Store, error) {
	raw, err := os.ReadFile(filepath.Join(stateDir, "env"))
	if err != nil {
		return nil, errors.New("no running make dev found (" + filepath.Join(stateDir, "env") + " is missing)")
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
			os.Setenv(k, v)
		}
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	return tokenstore.New(ssm.NewFromConfig(cfg), prefix, ""), nil
}
