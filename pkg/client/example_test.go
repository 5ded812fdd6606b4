package client_test

import (
	"context"
	"log"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// A business server calls WeChat with the token wxtoken publishes. When WeChat
// rejects it (40001, 40014, 42001), Do asks wxtoken for a fresh one, once,
// and repeats the call once. apiURL is the stack's ApiUrl output; the server's
// role needs the stack's ConsumerPolicyArn.
func Example() {
	ctx := context.Background()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	apiURL := "https://abcdef1234.execute-api.us-east-1.amazonaws.com"
	shop := client.New(awsCfg, "shop", apiURL)

	wc := &wechat.Client{} // any WeChat call that returns an error with ErrCode() int works
	err = shop.Do(ctx, func(ctx context.Context, token string) error {
		return wc.CheckToken(ctx, token) // e.g. send a template message, read a user's profile...
	})
	if err != nil {
		log.Printf("WeChat call failed: %v", err)
	}
}

// A page that uses the JS-SDK needs wx.config's signature of its URL, made
// with the app's jsapi_ticket (the app keeps one: wxtoken apps set shop
// --tickets jsapi). SignURL reads the ticket wxtoken publishes, cached like
// the token, and signs.
func ExampleClient_SignURL() {
	ctx := context.Background()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	shop := client.New(awsCfg, "shop", "https://abcdef1234.execute-api.us-east-1.amazonaws.com")
	sig, err := shop.SignURL(ctx, "https://shop.example/pay?order=42")
	if err != nil {
		log.Fatal(err)
	}
	// The page calls wx.config({appId, timestamp: sig.Timestamp, nonceStr: sig.NonceStr, signature: sig.Signature, jsApiList}).
	_ = sig
}
