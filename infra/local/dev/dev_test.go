package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
	"github.com/wxtoken/wxtoken/pkg/testsupport/syncbuf"
)

// TestDevTwice runs the local stack as `make dev` does (against the test
// bed's engines), uses the curl it prints, stops it, and starts it again.
func TestDevTwice(t *testing.T) {
	awstest.Config(t, awstest.DynamoDB, awstest.SSM)
	state := t.TempDir()
	sink := leakscan.Sink(t, "dev")
	for round := 1; round <= 2; round++ {
		d := launch(t, state, sink, "5s")
		api, sandbox, out := d.api, d.sandbox, d.out
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
		var tok syncbuf.Buffer
		if err := run(context.Background(), []string{"-token", "demo", "-state", state}, &tok); err != nil || strings.TrimSpace(tok.String()) != body.AccessToken {
			t.Errorf("round %d: dev -token: %v, same token: %v", round, err, strings.TrimSpace(tok.String()) == body.AccessToken)
		}
		if strings.Contains(out.String(), body.AccessToken) {
			t.Error("the console output holds the token")
		}
		// The demo's jsapi_ticket: published beside the token, valid at
		// the sandbox, and make dev-sign signs a page with it.
		ticket := devTicket(t, state, round)
		verdict := struct {
			ErrCode int `json:"errcode"`
		}{-1}
		checked, err := http.Get(sandbox + "/_sandbox/tickets/check?" + url.Values{"appid": {demoAppID}, "type": {"jsapi"}, "ticket": {ticket}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(checked.Body).Decode(&verdict)
		checked.Body.Close()
		if verdict.ErrCode != 0 {
			t.Errorf("round %d: the sandbox rejects the published jsapi_ticket with errcode %d", round, verdict.ErrCode)
		}
		// The ticket route answers the published ticket.
		tr, err := http.Post(api+"/v1/apps/demo/tickets/jsapi/refresh", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var tb struct {
			Ticket string `json:"ticket"`
		}
		_ = json.NewDecoder(tr.Body).Decode(&tb)
		tr.Body.Close()
		if tr.StatusCode != 200 || tb.Ticket != ticket {
			t.Errorf("round %d: the ticket route answered %d, the published ticket: %v", round, tr.StatusCode, tb.Ticket == ticket)
		}
		var signed syncbuf.Buffer
		page := "https://shop.example/pay?x=1#top"
		if err := run(context.Background(), []string{"-sign", page, "-state", state}, &signed); err != nil {
			t.Fatalf("round %d: dev -sign: %v", round, err)
		}
		var sig client.JSSDKSignature
		if err := json.Unmarshal([]byte(signed.String()), &sig); err != nil || sig.URL != "https://shop.example/pay?x=1" ||
			sig.Signature != client.SignJSSDK(ticket, sig.NonceStr, sig.Timestamp, sig.URL) {
			t.Errorf("round %d: dev -sign printed %q (%v), want a signature of the page with the published ticket", round, signed.String(), err)
		}
		for _, hint := range []string{"make dev-token APP=demo TICKET=jsapi", "make dev-sign URL="} {
			if !strings.Contains(out.String(), hint) {
				t.Errorf("round %d: the banner does not show %q", round, hint)
			}
		}
		if strings.Contains(out.String(), ticket) {
			t.Error("the console output holds the ticket")
		}
		logs, _ := os.ReadFile(filepath.Join(state, "functions.log"))
		if strings.Contains(string(logs), ticket) {
			t.Error("the function log holds the ticket")
		}
		if strings.Contains(string(logs), body.AccessToken) || strings.Contains(string(logs), demoSecret) {
			t.Error("the function log holds the token or the secret")
		}

		d.stop(t)
		if _, err := os.Stat(filepath.Join(state, "env")); !os.IsNotExist(err) {
			t.Errorf("round %d: %s/env left behind", round, state)
		}
		if _, err := http.Get(api + "/v1/apps/demo"); err == nil {
			t.Errorf("round %d: the API still answers after the stop", round)
		}
	}
}

// devTicket is the demo's jsapi_ticket as make dev-token TICKET=jsapi prints
// it, once the schedule published it.
func devTicket(t *testing.T, state string, round int) string {
	t.Helper()
	var tk syncbuf.Buffer
	if err := run(context.Background(), []string{"-token", "demo", "-ticket", "jsapi", "-state", state}, &tk); err != nil {
		t.Fatalf("round %d: dev -token demo -ticket jsapi: %v", round, err)
	}
	ticket := strings.TrimSpace(tk.String())
	if ticket == "" {
		t.Fatalf("round %d: no jsapi_ticket printed", round)
	}
	return ticket
}
