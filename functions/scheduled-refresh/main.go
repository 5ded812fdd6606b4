// Command scheduled-refresh is the Lambda function that EventBridge invokes
// on a schedule: it refreshes every registered app whose token is due and
// fails the invocation only when an app needs a person (see pkg/schedule).
// Configuration comes from the environment (see pkg/config); a bad one fails
// the cold start with a readable Runtime.InitError.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wxtoken/wxtoken/pkg/config"
	"github.com/wxtoken/wxtoken/pkg/schedule"
)

func main() {
	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		config.Fail(err)
	}
	deps, err := cfg.Build(context.Background(), os.Stdout)
	if err != nil {
		config.Fail(err)
	}
	h := &schedule.Handler{Refresher: deps.Refresher, Metrics: deps.Metrics, Logger: deps.Logger}
	lambda.Start(h.Handle)
}
