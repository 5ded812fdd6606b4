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
