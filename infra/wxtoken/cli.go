package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/wxtoken/wxtoken/pkg/config"
	"github.com/wxtoken/wxtoken/pkg/registry"
)

// cli is the command with its edges: the environment, how it loads AWS
// configuration, and the clock. run wires the real ones; tests their own.
type cli struct {
	getenv func(string) string
	// loadAWS loads the operator's AWS configuration for region ("": the
	// default chain's), with creds when set (make dev's static ones).
	loadAWS func(ctx context.Context, region string, creds aws.CredentialsProvider) (aws.Config, error)
	// apiCreds, when set, signs API calls instead of the AWS
	// configuration's credentials.
	apiCreds aws.CredentialsProvider
	// ips, when set, finds whitelist IPs instead of the target's logs.
	ips        ipFinder
	httpClient *http.Client
	now        func() time.Time
}

// run runs the command line args and returns its exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := &cli{getenv: os.Getenv, loadAWS: loadAWS, httpClient: newHTTPClient(), now: time.Now}
	return int(c.run(ctx, args, stdin, stdout, stderr))
}

func loadAWS(ctx context.Context, region string, creds aws.CredentialsProvider) (aws.Config, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	if creds != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(creds))
	}
	return awsconfig.LoadDefaultConfig(ctx, opts...)
}

// options are the flags every command takes: where the deployment is and
// how to print.
type options struct {
	stack, region, devDir string
	table, prefix, apiURL string
	wechatURL             string
	local, json           bool
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.stack, "stack", o.stack, "the deployed stack's name (default $WXTOKEN_STACK); its outputs name the table, prefix and API")
	fs.StringVar(&o.region, "region", o.region, "the stack's region (default: AWS_REGION or your AWS profile's)")
	fs.BoolVar(&o.local, "local", o.local, "work on a running `make dev` (table, prefix and API from the env file it writes)")
	fs.StringVar(&o.devDir, "dev-dir", o.devDir, "with --local: make dev's state directory, where it writes its engines' env file")
	fs.StringVar(&o.table, "table", o.table, "the table (overrides the stack's TableName; without --stack or --local: the table to use)")
	fs.StringVar(&o.prefix, "prefix", o.prefix, "the SSM prefix (overrides the stack's ParameterPrefix)")
	fs.StringVar(&o.apiURL, "api-url", o.apiURL, "the refresh API's base URL (overrides the stack's ApiUrl)")
	fs.StringVar(&o.wechatURL, "wechat-url", o.wechatURL, "WeChat's API base URL(s), comma-separated, for clear-quota (default WeChat's domains; --local: make dev's sandbox)")
	fs.BoolVar(&o.json, "json", o.json, "print JSON for scripts instead of text")
}

// session is one run of the command.
type session struct {
	*cli
	ctx    context.Context
	in     io.Reader
	out    io.Writer
	errOut io.Writer
	opts   options
	cmd    *command
	be     *backend
}

// command is one subcommand.
type command struct {
	name    string // "apps add"
	args    string // the synopsis after the name
	summary string
	detail  string
	run     func(s *session, args []string) error
}

// errHelp ends a command that printed its help.
var errHelp = errors.New("help printed")

func (c *cli) run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) ExitCode {
	s := &session{cli: c, ctx: ctx, in: stdin, out: stdout, errOut: stderr, opts: options{devDir: devDir}}
	top := flag.NewFlagSet("wxtoken", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	s.opts.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage())
			return ExitOK
		}
		return s.report(fail(ExitUsage, "%s\nRun `wxtoken help` for usage.", safeFlagError(err)))
	}
	rest := top.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage())
		return ExitUsage
	}
	if rest[0] == "help" {
		if cmd := find(rest[1:]); cmd != nil {
			fmt.Fprint(stdout, cmd.help())
		} else {
			fmt.Fprint(stdout, usage())
		}
		return ExitOK
	}
	cmd := find(rest)
	if cmd == nil {
		return s.report(fail(ExitUsage, "unknown command %q\nRun `wxtoken help` for the commands.", strings.Join(rest[:min(2, len(rest))], " ")))
	}
	s.cmd = cmd
	err := cmd.run(s, rest[len(strings.Fields(cmd.name)):])
	if errors.Is(err, errHelp) {
		return ExitOK
	}
	return s.report(err)
}

// report prints err (if any) on stderr and returns its exit code.
func (s *session) report(err error) ExitCode {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(s.errOut, "wxtoken: %v\n", err)
	return codeOf(err)
}

// find returns the command named by the first words of args.
func find(args []string) *command {
	for i := range commands {
		words := strings.Fields(commands[i].name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == commands[i].name {
			return &commands[i]
		}
	}
	return nil
}

// parse parses a command's flags (its own, defined by define, and the
// common ones) and returns its positional arguments, between least and most
// of them. Flags may follow positional arguments. It returns errHelp after
// printing the command's help for --help.
func (s *session) parse(args []string, least, most int, define func(fs *flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet("wxtoken "+s.cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if define != nil {
		define(fs)
	}
	s.opts.register(fs)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(s.out, s.cmd.help())
				return nil, errHelp
			}
			return nil, fail(ExitUsage, "%s\nRun `wxtoken %s --help` for usage.", safeFlagError(err), s.cmd.name)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) < least || len(pos) > most {
		// The arguments are not echoed: one may be a secret typed in the
		// wrong place.
		return nil, fail(ExitUsage, "wrong number of arguments (%d): usage: wxtoken %s %s\nSecrets are read from stdin only.", len(pos), s.cmd.name, s.cmd.args)
	}
	return pos, nil
}

var invalidValueRE = regexp.MustCompile(`^invalid (?:boolean )?value ".*" for flag (-\S+): (.*)$`)

// safeFlagError is the flag package's message without the value it quotes
// (a misplaced secret must not be echoed).
func safeFlagError(err error) string {
	msg := err.Error()
	if m := invalidValueRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("invalid value for flag %s: %s", m[1], strings.TrimPrefix(m[2], "parse error"))
	}
	return msg
}

// target resolves the deployment from the options.
func (s *session) resolve() (target, aws.Config, error) {
	o := s.opts
	if o.stack == "" && !o.local {
		o.stack = s.getenv("WXTOKEN_STACK")
	}
	var (
		t   target
		cfg aws.Config
		err error
	)
	wechatURLs, err := config.BaseURLs(o.wechatURL)
	if err != nil {
		return target{}, aws.Config{}, wrap(ExitUsage, err, "--wechat-url")
	}
	switch {
	case o.local && o.stack != "":
		return target{}, aws.Config{}, fail(ExitUsage, "--stack and --local exclude each other")
	case o.local:
		if t, err = localTarget(o.devDir); err != nil {
			return target{}, aws.Config{}, err
		}
		cfg, err = s.loadAWS(s.ctx, t.Region, credentials.NewStaticCredentialsProvider(t.AccessKeyID, t.SecretAccessKey, ""))
	case o.stack != "":
		if cfg, err = s.loadAWS(s.ctx, o.region, nil); err != nil {
			break
		}
		if cfg.Region == "" {
			return target{}, aws.Config{}, fail(ExitUsage, "no AWS region: pass --region or set AWS_REGION")
		}
		t, err = describeStack(s.ctx, cloudformation.NewFromConfig(cfg), o.stack, cfg.Region)
		if err != nil {
			return target{}, aws.Config{}, err
		}
	case o.table != "":
		cfg, err = s.loadAWS(s.ctx, o.region, nil)
		t = target{Region: cfg.Region, Sign: true}
	default:
		return target{}, aws.Config{}, fail(ExitUsage, "which deployment? Pass --stack NAME (or set WXTOKEN_STACK) for a deployed stack, or --local for `make dev`")
	}
	if err != nil {
		return target{}, aws.Config{}, wrap(ExitFailed, err, "load your AWS configuration")
	}
	t = t.override(o)
	if wechatURLs != nil {
		t.WeChatURLs = wechatURLs
	}
	if t.Prefix == "" {
		return target{}, aws.Config{}, fail(ExitUsage, "no parameter prefix: pass --prefix")
	}
	if !strings.HasPrefix(t.Prefix, "/") {
		return target{}, aws.Config{}, fail(ExitUsage, "the parameter prefix %q must start with /", t.Prefix)
	}
	return t, cfg, nil
}

// appArgs parses the arguments of a subcommand that takes one app NAME (and
// the flags define adds), checks the name and connects to the deployment.
// Subcommands that must refuse a flag before connecting parse on their own.
func (s *session) appArgs(args []string, define func(fs *flag.FlagSet)) (string, *backend, error) {
	pos, err := s.parse(args, 1, 1, define)
	if err != nil {
		return "", nil, err
	}
	name := pos[0]
	if !registry.ValidName(name) {
		return "", nil, fail(ExitNotFound, "no such app: app names are 1-63 characters of a-z, 0-9 and '-'")
	}
	be, err := s.backend()
	if err != nil {
		return "", nil, err
	}
	return name, be, nil
}

// backend returns the deployment's backend, resolving it once.
func (s *session) backend() (*backend, error) {
	if s.be != nil {
		return s.be, nil
	}
	t, cfg, err := s.resolve()
	if err != nil {
		return nil, err
	}
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if t.DynamoDBEndpoint != "" {
			o.BaseEndpoint = aws.String(t.DynamoDBEndpoint)
		}
	})
	ps := ssm.NewFromConfig(cfg, func(o *ssm.Options) {
		if t.SSMEndpoint != "" {
			o.BaseEndpoint = aws.String(t.SSMEndpoint)
		}
	})
	var api *apiClient
	if t.APIURL != "" {
		api = &apiClient{base: t.APIURL, http: s.httpClient, region: t.Region}
		if t.Sign {
			api.creds = cfg.Credentials
			if s.apiCreds != nil {
				api.creds = s.apiCreds
			}
		}
	}
	s.be = newBackend(t, db, ps, api, s.now)
	switch {
	case s.ips != nil:
		s.be.ips = s.ips
	case s.opts.local:
		s.be.ips = fileIPs{path: filepath.Join(s.opts.devDir, "functions.log")}
	case t.Name != "":
		s.be.ips = logGroupIPs{logs: cloudwatchlogs.NewFromConfig(cfg), stack: t.Name, now: s.now}
	}
	return s.be, nil
}

// help is a command's --help text.
func (c *command) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: wxtoken %s %s\n\n%s\n", c.name, c.args, c.summary)
	if c.detail != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(c.detail))
	}
	b.WriteString("\n" + commonHelp + exitHelp)
	return b.String()
}

const commonHelp = `Where (every command):
  --stack NAME [--region R]   a deployed stack (default $WXTOKEN_STACK): reads its outputs
                              TableName, ParameterPrefix, ApiUrl with your AWS credentials
  --local [--dev-dir DIR]     a running make dev (table wxtoken-dev, prefix /wxtoken,
                              API http://127.0.0.1:8080, engines from .cache/dev/env)
  --table T --prefix P --api-url U   override (or, without --stack/--local, name) them
  --json                      JSON on stdout for scripts
`

const exitHelp = `
Exit codes:
  0  done
  1  the operation failed (AWS, the API, the network): the message says what to do
  2  usage error (a wrong flag or argument; a secret given on the command line)
  3  not found (no such app, stack or published token)
  4  refused by validation (bad name, appid, margin or budget; name or appid taken)
  5  WeChat refused the app's credentials or IP (the app stays registered; the
     message says what to fix)
`

// usage is the command's overview.
func usage() string {
	var b strings.Builder
	b.WriteString("wxtoken: register and run the WeChat apps of a wxtoken deployment\n\nusage: wxtoken [--stack NAME | --local] COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-14s %s\n", c.name, c.summary)
	}
	b.WriteString("\n`wxtoken COMMAND --help` (or `wxtoken help COMMAND`) explains one.\n\n" + commonHelp + exitHelp)
	return b.String()
}
