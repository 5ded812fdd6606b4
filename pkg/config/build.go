package config

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/metrics"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// Deps are a function's dependencies, built once per cold start.
type Deps struct {
	Config    Config
	Logger    *slog.Logger
	Metrics   *metrics.EMF
	Refresher *refresh.Refresher
}

// Build creates the SDK clients (from the SDK's default configuration
// chain), the WeChat client and the refresher, writing logs and metrics to
// w. It fails when the AWS configuration cannot be loaded or names no
// region.
func (c Config) Build(ctx context.Context, w io.Writer) (*Deps, error) {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("config: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("config: no AWS region: set AWS_REGION (Lambda sets it for you)")
	}
	return c.BuildWith(awsCfg, w), nil
}

// BuildWith is Build with a given AWS configuration.
func (c Config) BuildWith(awsCfg aws.Config, w io.Writer) *Deps {
	logger := c.Logger(w)
	emf := &metrics.EMF{W: w, Service: c.Service}
	ddb := dynamodb.NewFromConfig(awsCfg)
	wc := &wechat.Client{BaseURLs: c.WeChatBaseURLs, WeComBaseURLs: c.WeComBaseURLs, Logger: logger}
	r := &refresh.Refresher{
		Apps:          registry.New(ddb, c.Table),
		Store:         tokenstore.New(ssm.NewFromConfig(awsCfg), c.ParameterPrefix, c.KMSKeyID),
		Leases:        lease.New(ddb, c.Table),
		WeChat:        wc,
		Owner:         Owner(),
		Logger:        logger,
		Observe:       emf.Observe,
		LeaseDuration: c.LeaseDuration,
		Concurrency:   c.Concurrency,
	}
	return &Deps{Config: c, Logger: logger, Metrics: emf, Refresher: r}
}

// Owner names this process in leases: the Lambda log stream (one per
// execution environment) when there is one, the host otherwise, plus a
// random suffix so that two processes never share a name.
func Owner() string {
	base := os.Getenv("AWS_LAMBDA_LOG_STREAM_NAME")
	if base == "" {
		base, _ = os.Hostname()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", base, os.Getpid(), hex.EncodeToString(b[:]))
}

// Fail ends a cold start that cannot go on: it logs err as JSON on stderr,
// reports it to the Lambda Runtime API's init/error route when running in
// Lambda (so the invocation fails with a readable Runtime.InitError rather
// than a bare exit status), and exits with status 1.
func Fail(err error) {
	msg := err.Error()
	slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("cold start failed", "error", msg)
	if api := os.Getenv("AWS_LAMBDA_RUNTIME_API"); api != "" {
		body, _ := json.Marshal(map[string]any{"errorMessage": msg, "errorType": "Runtime.InitError", "stackTrace": []string{}})
		req, rerr := http.NewRequest(http.MethodPost, "http://"+api+"/2018-06-01/runtime/init/error", bytes.NewReader(body))
		if rerr == nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
			client := &http.Client{Timeout: 5 * time.Second}
			if resp, derr := client.Do(req); derr == nil {
				resp.Body.Close()
			}
		}
	}
	os.Exit(1)
}

// Load is a function's cold start: FromEnv(os.Getenv), then Build writing to
// w. On any error it does not return: it calls Fail, so the first invocation
// fails with a Runtime.InitError naming what is wrong.
func Load(ctx context.Context, w io.Writer) *Deps {
	cfg, err := FromEnv(os.Getenv)
	if err != nil {
		Fail(err)
	}
	deps, err := cfg.Build(ctx, w)
	if err != nil {
		Fail(err)
	}
	return deps
}
