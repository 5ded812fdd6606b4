// Command refresh-api is the Lambda function behind the API Gateway HTTP API:
// on-demand refresh, forced refresh and status (design.md §3.2, pkg/api).
// Configuration comes from the environment (see pkg/config); a bad one fails
// the cold start with a readable Runtime.InitError.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wxtoken/wxtoken/pkg/api"
	"github.com/wxtoken/wxtoken/pkg/config"
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
	lambda.Start(api.New(deps.Refresher, deps.Logger).WithMetrics(deps.Metrics))
}
