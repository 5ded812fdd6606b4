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
	deps := config.Load(context.Background(), os.Stdout)
	h := &schedule.Handler{Refresher: deps.Refresher, Metrics: deps.Metrics, Logger: deps.Logger}
	lambda.Start(h.Handle)
}
