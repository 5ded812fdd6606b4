// Command refresh-api is the Lambda function behind the API Gateway HTTP API
// that serves on-demand refreshes and status (design.md §3.2).
//
// The routes are not implemented yet: every request is answered with 501 and
// a JSON error body in the API's error shape.
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
	lambda.Start(func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		logger.InfoContext(ctx, "request", "route", req.RouteKey, "request_id", req.RequestContext.RequestID)
		return events.APIGatewayV2HTTPResponse{
			StatusCode: 501,
			Headers:    map[string]string{"Content-Type": "application/json"},
			Body:       `{"error":{"code":"not_implemented","message":"the refresh API is not implemented yet"}}`,
		}, nil
	})
}
