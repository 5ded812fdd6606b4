package client_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/client"
)

// WeChat's worked example (附录1; WeCom's JS-SDK签名算法 gives the same).
const (
	exampleTicket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
	exampleNonce  = "Wm3WZYTPz0wzccnW"
	exampleTime   = 1414587457
)

func TestSignJSSDK(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		// The current page of 附录1 and WeCom's page.
		{"WeChat's example", "http://mp.weixin.qq.com?params=value", "0f9de62fce790f9a083d5c99e95740ceb90c27ed"},
		// The earlier edition of 附录1, without the query.
		{"WeChat's earlier example", "http://mp.weixin.qq.com", "f4d90daf4b3bca3078ab155816175ba34c443a7b"},
		{"the fragment is not signed", "http://mp.weixin.qq.com?params=value#section", "0f9de62fce790f9a083d5c99e95740ceb90c27ed"},
	}
	for _, tt := range tests {
		if got := client.SignJSSDK(exampleTicket, exampleNonce, exampleTime, tt.url); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestNewJSSDKSignature(t *testing.T) {
	now := time.Unix(exampleTime, 0)
	a, err := client.NewJSSDKSignature(exampleTicket, "https://shop.example/pay?x=1#top", now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.NewJSSDKSignature(exampleTicket, "https://shop.example/pay?x=1#top", now)
	if err != nil {
		t.Fatal(err)
	}
	if a.URL != "https://shop.example/pay?x=1" || a.Timestamp != exampleTime || len(a.NonceStr) != 16 {
		t.Errorf("signature %+v", a)
	}
	if a.Signature != client.SignJSSDK(exampleTicket, a.NonceStr, a.Timestamp, a.URL) {
		t.Error("the signature does not match its own nonce and timestamp")
	}
	if a.NonceStr == b.NonceStr {
		t.Error("two signatures share a nonce")
	}
	if _, err := client.NewJSSDKSignature("", "https://shop.example/pay?token=secret", now); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("no ticket: %v, want an error without the URL's query", err)
	}
}

// TestSignCard: 附录4 gives the rule but no worked example: the expected
// values were computed independently (Python's hashlib over the sorted,
// concatenated values).
func TestSignCard(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"with a code", []string{"card_ticket_example", "1404896688", "pDF3iY9tv9zCGCj4jTXFOo1DxHdo", "123456789", "nonce0123"}, "1d93815641a0b14b51919abb80a39789f4e9245a"},
		{"order does not matter", []string{"nonce0123", "123456789", "pDF3iY9tv9zCGCj4jTXFOo1DxHdo", "1404896688", "card_ticket_example"}, "1d93815641a0b14b51919abb80a39789f4e9245a"},
		{"without a code", []string{"card_ticket_example", "1404896688", "pDF3iY9tv9zCGCj4jTXFOo1DxHdo", "nonce0123"}, "dc0b6664b4ec233b2f84bcdf24b4b9498128278e"},
	}
	for _, tt := range tests {
		if got := client.SignCard(tt.values...); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
