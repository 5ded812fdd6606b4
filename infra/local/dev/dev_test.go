package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	apiRE     = regexp.MustCompile(`API:\s+(http://\S+)`)
	sandboxRE = regexp.MustCompile(`WeChat sandbox on (http://\S+)`)
)

// TestDevTwice runs the local stack as `make dev` does (against the test
// bed's engines), uses the curl it prints, stops it, and starts it again.
func TestDevTwice(t *testing.T) {
	awstest.Config(t, awstest.DynamoDB, awstest.SSM)
	state := t.TempDir()
	sink := leakscan.Sink(t, "dev")
	for round := 1; round <= 2; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		out := &syncBuffer{}
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-sandbox-addr", "127.0.0.1:0", "-state", state, "-every", "5s"}, io.MultiWriter(out, sink))
		}()
		var api, sandbox string
		deadline := time.Now().Add(60 * time.Second)
		for api == "" && time.Now().Before(deadline) {
			select {
			case err := <-done:
				cancel()
				t.Fatalf("round %d: dev ended early: %v\n%s", round, err, out.String())
			case <-time.After(100 * time.Millisecond):
			}
			if m := apiRE.FindStringSubmatch(out.String()); m != nil && strings.Contains(out.String(), "Ctrl-C stops everything") {
				api, sandbox = m[1], sandboxRE.FindStringSubmatch(out.String())[1]
			}
		}
		if api == "" {
			cancel()
			t.Fatalf("round %d: no banner within a minute:\n%s", round, out.String())
		}
		if !strings.Contains(out.String(), "curl -s -X POST "+api+"/v1/apps/demo/refresh") {
			t.Errorf("the banner does not print the refresh curl:\n%s", out.String())
		}

		// The printed curl: POST .../refresh with no body.
		resp, err := http.Post(api+"/v1/apps/demo/refresh", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			AccessToken string `json:"access_token"`
			Version     int64  `json:"version"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || body.AccessToken == "" {
			t.Fatalf("round %d: refresh answered %d (%v)", round, resp.StatusCode, err)
		}
		// The sandbox's business endpoint accepts the token.
		check, err := http.Get(sandbox + "/cgi-bin/get_api_domain_ip?access_token=" + body.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		var ans struct {
			ErrCode int `json:"errcode"`
		}
		_ = json.NewDecoder(check.Body).Decode(&ans)
		check.Body.Close()
		if ans.ErrCode != 0 {
			t.Errorf("round %d: the sandbox rejects the token with errcode %d", round, ans.ErrCode)
		}
		// make dev-token prints the same token.
		var tok syncBuffer
		if err := run(context.Background(), []string{"-token", "demo", "-state", state}, &tok); err != nil || strings.TrimSpace(tok.String()) != body.AccessToken {
			t.Errorf("round %d: dev -token: %v, same token: %v", round, err, strings.TrimSpace(tok.String()) == body.AccessToken)
		}
		if strings.Contains(out.String(), body.AccessToken) {
			t.Error("the console output holds the token")
		}
		logs, _ := os.ReadFile(filepath.Join(state, "functions.log"))
		if strings.Contains(string(logs), body.AccessToken) || strings.Contains(string(logs), demoSecret) {
			t.Error("the function log holds the token or the secret")
		}

		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("round %d: dev ended with %v", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: dev did not stop within 30 s of the interrupt", round)
		}
		if _, err := os.Stat(filepath.Join(state, "env")); !os.IsNotExist(err) {
			t.Errorf("round %d: %s/env left behind", round, state)
		}
		if _, err := http.Get(api + "/v1/apps/demo"); err == nil {
			t.Errorf("round %d: the API still answers after the stop", round)
		}
	}
}
