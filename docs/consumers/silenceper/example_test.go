package wxsilenceper_test

import (
	"context"
	"log"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/officialaccount"
	offConfig "github.com/silenceper/wechat/v2/officialaccount/config"

	wxsilenceper "github.com/wxtoken/wxtoken/docs/consumers/silenceper"
	"github.com/wxtoken/wxtoken/pkg/client"
)

// A business server using silenceper/wechat takes the app's token and jsapi
// ticket from wxtoken, and wraps its SDK calls in Do, which refreshes
// through wxtoken and retries once when WeChat rejects the token. apiURL
// is the stack's ApiUrl output; the server's role needs the stack's
// ConsumerPolicyArn.
func Example() {
	ctx := context.Background()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	shop := client.New(awsCfg, "shop", "https://abcdef1234.execute-api.us-east-1.amazonaws.com")

	// No AppSecret: wxtoken holds it. The SDK requires a cache; the
	// handles do not use it.
	oa := officialaccount.NewOfficialAccount(&offConfig.Config{AppID: "wx0123456789abcdef", Cache: cache.NewMemory()})
	token := wxsilenceper.New(shop)
	oa.SetAccessTokenHandle(token)
	oa.GetJs().SetJsTicketHandle(wxsilenceper.NewJsTicket(shop))

	var ips []string
	err = token.Do(ctx, func() (err error) {
		ips, err = oa.GetBasic().GetCallbackIP() // any SDK call made through oa
		return err
	})
	if err != nil {
		log.Printf("WeChat call failed: %v", err)
	}
	_ = ips
}
