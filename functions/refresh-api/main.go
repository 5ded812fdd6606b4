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
	deps := config.Load(context.Background(), os.Stdout)
	lambda.Start(api.New(deps.Refresher, deps.Logger).WithMetrics(deps.Metrics))
}
