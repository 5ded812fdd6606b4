package lambdatest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/testsupport/lambdatest"
)

// TestCloseWithPendingPoll is the regression test for a hang seen in CI: a
// function process waiting in its long poll on invocation/next kept
// httptest.Server.Close waiting forever, and with it the whole test binary.
func TestCloseWithPendingPoll(t *testing.T) {
	rt := lambdatest.NewRuntime()
	base := "http://" + strings.TrimPrefix(rt.Env(), "AWS_LAMBDA_RUNTIME_API=")
	polled := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/2018-06-01/runtime/invocation/next")
		if err != nil {
			polled <- -1
			return
		}
		resp.Body.Close()
		polled <- resp.StatusCode
	}()
	// Wait until the poll is inside the handler: that is the case that hung.
	for deadline := time.Now().Add(10 * time.Second); rt.Waiting() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the poll on invocation/next never reached the runtime")
		}
	}

	closed := make(chan struct{})
	go func() { rt.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Runtime.Close did not return while a poll on invocation/next was pending")
	}
	if got := <-polled; got != http.StatusServiceUnavailable && got != -1 {
		t.Errorf("pending poll answered %d, want 503 (or a closed connection)", got)
	}
}
