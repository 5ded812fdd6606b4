// Package config reads a wxtoken function's configuration from the
// environment, validates it at cold start, and builds the dependencies (SDK
// clients, the WeChat client, the refresher, logs and metrics) once per
// process. Both Lambda functions and the local dev server use it.
//
// Environment (defaults in brackets):
//
//	WXTOKEN_TABLE             DynamoDB table of apps, leases and state (required)
//	WXTOKEN_PARAMETER_PREFIX  SSM prefix of secrets and tokens [/wxtoken]
//	WXTOKEN_KMS_KEY_ID        KMS key that encrypts published tokens [alias/aws/ssm]
//	WXTOKEN_LEASE_SECONDS     DynamoDB lease duration; must exceed the function timeout [60]
//	WXTOKEN_CONCURRENCY       apps refreshed at once by a scheduled run [8]
//	WXTOKEN_LOG_LEVEL         debug, info, warn or error [info]
//	WXTOKEN_SERVICE           the Service dimension of every metric [wxtoken]
//	WXTOKEN_WECHAT_BASE_URLS  WeChat API domains in fail-over order, comma-separated [WeChat's]
//	WXTOKEN_WECOM_BASE_URLS   WeCom API domains [https://qyapi.weixin.qq.com]
//
// The AWS SDK reads its own settings (AWS_REGION, credentials,
// AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_SSM, AWS_MAX_ATTEMPTS...).
// Secrets are never configuration: they live in SSM (see the README).
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config is a validated configuration.
type Config struct {
	Table           string
	ParameterPrefix string
	KMSKeyID        string
	LeaseDuration   time.Duration
	Concurrency     int
	LogLevel        slog.Level
	Service         string
	WeChatBaseURLs  []string // nil: the client's defaults
	WeComBaseURLs   []string // nil: the client's defaults
}

// Environment variable names.
const (
	EnvTable           = "WXTOKEN_TABLE"
	EnvParameterPrefix = "WXTOKEN_PARAMETER_PREFIX"
	EnvKMSKeyID        = "WXTOKEN_KMS_KEY_ID"
	EnvLeaseSeconds    = "WXTOKEN_LEASE_SECONDS"
	EnvConcurrency     = "WXTOKEN_CONCURRENCY"
	EnvLogLevel        = "WXTOKEN_LOG_LEVEL"
	EnvService         = "WXTOKEN_SERVICE"
	EnvWeChatBaseURLs  = "WXTOKEN_WECHAT_BASE_URLS"
	EnvWeComBaseURLs   = "WXTOKEN_WECOM_BASE_URLS"
	// EnvAPIURL is no function's: make dev writes its API's address under
	// it, beside the table and prefix, for `wxtoken --local`.
	EnvAPIURL = "WXTOKEN_API_URL"
)

var (
	tableRE  = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)
	prefixRE = regexp.MustCompile(`^(/[a-zA-Z0-9_.-]+)+$`)
)

// FromEnv reads and validates the configuration through getenv (os.Getenv).
// The error lists every problem found, each naming its variable; it never
// quotes a value that could be sensitive.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Table:           strings.TrimSpace(getenv(EnvTable)),
		ParameterPrefix: strings.TrimSpace(getenv(EnvParameterPrefix)),
		KMSKeyID:        strings.TrimSpace(getenv(EnvKMSKeyID)),
		LeaseDuration:   60 * time.Second,
		Concurrency:     8,
		Service:         strings.TrimSpace(getenv(EnvService)),
	}
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}

	switch {
	case c.Table == "":
		bad(EnvTable, "not set; it names the DynamoDB table of apps and leases (the stack's TableName output)")
	case !tableRE.MatchString(c.Table):
		bad(EnvTable, "%q is not a DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -)", c.Table)
	}
	if c.ParameterPrefix == "" {
		c.ParameterPrefix = "/wxtoken"
	}
	if !prefixRE.MatchString(c.ParameterPrefix) {
		bad(EnvParameterPrefix, "%q is not an SSM path: it starts with a slash and has no trailing slash, like /wxtoken", c.ParameterPrefix)
	}
	if c.KMSKeyID == "" {
		c.KMSKeyID = "alias/aws/ssm"
	}
	if c.Service == "" {
		c.Service = "wxtoken"
	}
	if v := strings.TrimSpace(getenv(EnvLeaseSeconds)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 15 || n > 900 {
			bad(EnvLeaseSeconds, "%q is not a whole number of seconds between 15 and 900", v)
		} else {
			c.LeaseDuration = time.Duration(n) * time.Second
		}
	}
	if v := strings.TrimSpace(getenv(EnvConcurrency)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			bad(EnvConcurrency, "%q is not a number between 1 and 64", v)
		} else {
			c.Concurrency = n
		}
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv(EnvLogLevel))); v {
	case "", "info":
		c.LogLevel = slog.LevelInfo
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		bad(EnvLogLevel, "%q is not one of debug, info, warn, error", v)
	}
	var err error
	if c.WeChatBaseURLs, err = BaseURLs(getenv(EnvWeChatBaseURLs)); err != nil {
		bad(EnvWeChatBaseURLs, "%v", err)
	}
	if c.WeComBaseURLs, err = BaseURLs(getenv(EnvWeComBaseURLs)); err != nil {
		bad(EnvWeComBaseURLs, "%v", err)
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("config: invalid environment: %w", errors.Join(errs...))
	}
	return c, nil
}

// BaseURLs parses a comma-separated list of WeChat API base URLs (the form
// of EnvWeChatBaseURLs): https, or http to a loopback address only (a local
// sandbox), since the secret travels in them. An empty list is nil.
func BaseURLs(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	// Values are not quoted in errors: a URL may carry credentials.
	var out []string
	for i, s := range strings.Split(v, ",") {
		s = strings.TrimRight(strings.TrimSpace(s), "/")
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("entry %d is not a base URL like https://api.weixin.qq.com (scheme and host only, no user, path or query)", i+1)
		}
		switch u.Scheme {
		case "https":
		case "http":
			if !loopback(u.Hostname()) {
				return nil, fmt.Errorf("entry %d: plain http is allowed only to a loopback address (a local sandbox); the AppSecret travels in these requests", i+1)
			}
		default:
			return nil, fmt.Errorf("entry %d: scheme must be https", i+1)
		}
		out = append(out, s)
	}
	return out, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Logger returns the JSON logger every function writes to w (stdout in
// Lambda, where CloudWatch Logs collects it).
func (c Config) Logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: c.LogLevel}))
}
