package awstest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
)

// recorder is a testing.TB that records Skip and Fatalf (the calls Config
// makes) instead of ending the goroutine, so Config's decision can be observed.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Skip(args ...any)             { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatalf(f string, args ...any) { r.failed = fmt.Sprintf(f, args...) }

func TestConfigMissingEndpoint(t *testing.T) {
	tests := []struct {
		name        string
		required    string
		wantSkipped bool
		wantFailed  bool
	}{
		{"skips without the test bed", "", true, false},
		{"fails when the test bed is required", "required", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(awstest.EndpointEnv(awstest.SSM), "")
			t.Setenv(awstest.EndpointEnv(awstest.DynamoDB), "http://127.0.0.1:1")
			t.Setenv(awstest.RequiredEnv, tt.required)
			r := &recorder{TB: t}
			awstest.Config(r, awstest.DynamoDB, awstest.SSM)
			if got := r.skipped != ""; got != tt.wantSkipped {
				t.Errorf("skipped = %v (%q), want %v", got, r.skipped, tt.wantSkipped)
			}
			if got := r.failed != ""; got != tt.wantFailed {
				t.Errorf("failed = %v (%q), want %v", got, r.failed, tt.wantFailed)
			}
			msg := r.skipped + r.failed
			if !strings.Contains(msg, "AWS_ENDPOINT_URL_SSM") || strings.Contains(msg, "AWS_ENDPOINT_URL_DYNAMODB") {
				t.Errorf("message %q should name exactly the missing variable AWS_ENDPOINT_URL_SSM", msg)
			}
			if !strings.Contains(msg, "make test") {
				t.Errorf("message %q should say how to run the test bed", msg)
			}
		})
	}
}
