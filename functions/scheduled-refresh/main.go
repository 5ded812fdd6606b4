// Command scheduled-refresh is the Lambda function that EventBridge invokes on
// a schedule to refresh every registered app whose token is due.
//
// The refresh core is not wired in yet: for now the function logs each
// scheduled event it receives and reports that no refresh was performed.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	lambda.Start(func(ctx context.Context, ev events.EventBridgeEvent) error {
		logger.WarnContext(ctx, "scheduled run received; refresh core not implemented yet, nothing refreshed",
			"event_id", ev.ID, "detail_type", ev.DetailType, "time", ev.Time)
		return nil
	})
}
