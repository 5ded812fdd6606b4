// Package consumers_test runs the README's consumer snippets — Python with
// boto3, Node.js with the AWS SDK for JavaScript v3 — against the local
// stack (engines, sandbox, the API behind a SigV4 check): each reads the
// token, refreshes it, reads the jsapi ticket and signs a page URL with it
// (and WeChat's worked example). It also checks that the README quotes them
// verbatim.
package consumers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

const appID = "wxsnippet0000001"

// snippet extracts the part of a file between its README markers.
func snippet(t *testing.T, file string) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	begin := strings.Index(s, "README begin")
	end := strings.Index(s, "README end")
	if begin < 0 || end < begin {
		t.Fatalf("%s has no README markers", file)
	}
	s = s[strings.Index(s[begin:], "\n")+begin+1 : end]
	return s[:strings.LastIndex(s, "\n")+1]
}

func TestREADMEQuotesTheSnippets(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"consumer.py", "consumer.js", "wxjava/src/main/java/io/github/wxtoken/wxjava/Usage.java"} {
		if s := snippet(t, f); !strings.Contains(string(readme), s) {
			t.Errorf("README.md does not quote %s's snippet verbatim; copy it from docs/consumers/%s:\n%s", f, f, s)
		}
	}
}

// tool returns the path of an interpreter the Makefile installs, skipping
// (or failing under make test) when it is missing.
func tool(t *testing.T, path, what string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		msg := what + " is not installed (" + path + "); run make consumers-install testbed-install"
		if os.Getenv("WXTOKEN_TESTBED") == "required" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

func TestSnippets(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	nodeModules := filepath.Join(repo, ".cache", "node", "node_modules")
	tests := []struct {
		name string
		cmd  func(t *testing.T) []string
	}{
		{"python", func(t *testing.T) []string {
			return []string{tool(t, filepath.Join(repo, ".cache", "venv", "bin", "python"), "the Python venv with boto3"), "consumer.py"}
		}},
		{"node", func(t *testing.T) []string {
			tool(t, nodeModules, "the AWS SDK for JavaScript")
			node, err := exec.LookPath("node")
			if err != nil {
				t.Fatal("node not found")
			}
			return []string{node, "consumer.js"}
		}},
	}
	app := registry.App{Name: "shop", AppID: appID, Kind: registry.OfficialAccount, Mode: registry.Classic,
		Tickets: registry.TicketSetOf(registry.TicketJSAPI)}
	st := stacktest.New(t, stacktest.Options{}, app)
	ticket := st.PublishTicket("shop", registry.TicketJSAPI)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv := tt.cmd(t)
			// Past the app's minimum interval between on-demand refreshes.
			st.Sandbox.Clock().Advance(2 * time.Minute)
			published := st.Publish("shop")
			st.Sandbox.Revoke(appID) // WeChat now rejects it: the snippet's refresh must replace it
			before := st.BadSignatures.Load()

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], st.APIURL, "shop", st.Prefix)...)
			cmd.Env = childEnv("NODE_PATH=" + nodeModules)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v (last signature error: %v)\nstderr:\n%s", tt.name, err, st.LastSignatureError.Load(), stderr.String())
			}
			var got struct {
				Token, Fresh, Ticket, Example string
				Signed                        client.JSSDKSignature
			}
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
				t.Fatalf("output %q: %v", stdout.String(), err)
			}
			now, _ := st.Published("shop")
			switch {
			case got.Token != published:
				t.Errorf("get_token read fp %s, want the published fp %s", wechat.Fingerprint(got.Token), wechat.Fingerprint(published))
			case got.Fresh == published || got.Fresh != now:
				t.Errorf("refresh returned fp %s; published before %s, now %s: want the new published token",
					wechat.Fingerprint(got.Fresh), wechat.Fingerprint(published), wechat.Fingerprint(now))
			case st.Sandbox.Check(got.Fresh) != 0:
				t.Error("WeChat rejects the refreshed token")
			}
			// The signature: WeChat's worked example, and the page URL signed
			// with the published ticket (without its fragment).
			const pageURL = "https://shop.example/pay?order=42"
			switch sig := got.Signed; {
			case got.Example != "0f9de62fce790f9a083d5c99e95740ceb90c27ed":
				t.Errorf("the snippet signs WeChat's worked example as %q, want 0f9de62fce790f9a083d5c99e95740ceb90c27ed", got.Example)
			case got.Ticket != ticket:
				t.Errorf("get_ticket read fp %s, want the published fp %s", wechat.Fingerprint(got.Ticket), wechat.Fingerprint(ticket))
			case sig.URL != pageURL || sig.NonceStr == "" || sig.Timestamp < time.Now().Add(-time.Hour).Unix():
				t.Errorf("signed %+v: want the URL %s, a nonce and the time now", sig, pageURL)
			case sig.Signature != client.SignJSSDK(ticket, sig.NonceStr, sig.Timestamp, pageURL):
				t.Errorf("signature %s, want %s", sig.Signature, client.SignJSSDK(ticket, sig.NonceStr, sig.Timestamp, pageURL))
			case st.Sandbox.CheckTicket(appID, wechattest.TicketJSAPI, got.Ticket) != 0:
				t.Error("WeChat rejects the ticket the snippet signed with")
			}
			if n := st.BadSignatures.Load() - before; n != 0 {
				t.Errorf("%d of the snippet's requests failed the SigV4 check", n)
			}
		})
	}
}
