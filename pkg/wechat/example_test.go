package wechat_test

import (
	"context"
	"fmt"

	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// Example fetches a stable access token from the WeChat sandbox, checks it
// with a business call, and shows what a rejection looks like.
func Example() {
	sandbox := wechattest.NewServer(wechattest.Config{},
		wechattest.App{AppID: "wxexample", Secret: "example-secret", Kind: wechattest.OfficialAccount})
	defer sandbox.Close()

	// Without BaseURLs the client talks to WeChat's own domains.
	client := &wechat.Client{BaseURLs: []string{sandbox.URL}}
	ctx := context.Background()

	tok, err := client.StableToken(ctx, "wxexample", "example-secret", false)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("lifetime:", tok.ExpiresIn)
	fmt.Println("accepted:", client.CheckToken(ctx, tok.AccessToken) == nil)

	_, err = client.StableToken(ctx, "wxexample", "wrong-secret", false)
	fmt.Println("wrong secret is a config error:", wechat.IsConfig(err))
	// Output:
	// lifetime: 2h0m0s
	// accepted: true
	// wrong secret is a config error: true
}
