// Package functions_test runs the two Lambda entry points as real processes
// under the Lambda Runtime API stand-in of pkg/lambdatest, fed by events/.
package functions_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lambdatest"
)

func TestFunctionsStartAndAnswer(t *testing.T) {
	tests := []struct {
		name  string
		pkg   string
		event string
		check func(t *testing.T, payload []byte)
	}{
		{
			name:  "scheduled-refresh",
			pkg:   "github.com/wxtoken/wxtoken/functions/scheduled-refresh",
			event: "../events/schedule.json",
			check: func(t *testing.T, payload []byte) {
				if got := strings.TrimSpace(string(payload)); got != "null" {
					t.Errorf("response = %s, want null (a handler that returns no value and no error)", got)
				}
			},
		},
		{
			name:  "refresh-api",
			pkg:   "github.com/wxtoken/wxtoken/functions/refresh-api",
			event: "../events/refresh.json",
			check: func(t *testing.T, payload []byte) {
				var resp struct {
					StatusCode int               `json:"statusCode"`
					Headers    map[string]string `json:"headers"`
					Body       string            `json:"body"`
				}
				if err := json.Unmarshal(payload, &resp); err != nil {
					t.Fatalf("response %s is not an HTTP API response: %v", payload, err)
				}
				if resp.StatusCode != 501 || resp.Headers["Content-Type"] != "application/json" {
					t.Errorf("status %d, content type %q; want 501 application/json", resp.StatusCode, resp.Headers["Content-Type"])
				}
				var body struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if err := json.Unmarshal([]byte(resp.Body), &body); err != nil || body.Error.Code == "" {
					t.Errorf("body %q is not a JSON error document (%v)", resp.Body, err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			event, err := os.ReadFile(tt.event)
			if err != nil {
				t.Fatal(err)
			}
			bin := lambdatest.Build(t, tt.pkg)
			rt := lambdatest.NewRuntime()
			defer rt.Close()
			proc := rt.Start(t, bin)

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := rt.Invoke(ctx, event)
			if err != nil {
				t.Fatalf("invoke: %v\nprocess output:\n%s", err, proc.Output())
			}
			if res.Error != nil {
				t.Fatalf("function reported an error: %v\nprocess output:\n%s", res.Error, proc.Output())
			}
			tt.check(t, res.Payload)

			// A second invocation proves the process stays in its invoke loop.
			if _, err := rt.Invoke(ctx, event); err != nil {
				t.Fatalf("second invoke: %v\nprocess output:\n%s", err, proc.Output())
			}
		})
	}
}
