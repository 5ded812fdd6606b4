package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/client"
)

// Review K1: after the token's parameter is recreated (versions start at 1
// again), a read of the new parameter is cached like any other; it used to
// be dropped for its lower version, so that every Token was an SSM read.
func TestRecreatedParameterIsCached(t *testing.T) {
	l := newLocal(t, shop())
	l.publish() // version 1
	name := l.Prefix + "/shop/access_token"
	api := ssm.NewFromConfig(l.cfg)
	ctx := context.Background()
	if _, err := api.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String("placeholder-value-a"), // version 2
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := l.client("shop", func() time.Time { return now })
	if _, err := c.Token(ctx); err != nil {
		t.Fatal(err)
	}
	// The parameter is deleted and written again: version 1.
	if _, err := api.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String("placeholder-value-b"),
		Type: ssmtypes.ParameterTypeSecureString}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(client.DefaultMaxAge)
	l.reads.Store(0)
	for range 3 {
		if tok, err := c.Token(ctx); err != nil || tok != "placeholder-value-b" {
			t.Fatalf("Token after the parameter was recreated: %q, %v; want the new value", tok, err)
		}
	}
	if n := l.reads.Load(); n != 1 {
		t.Errorf("3 Token calls after the parameter was recreated made %d SSM reads, want 1", n)
	}
}

// Review K4: New takes the region of the stack from its API URL, for SSM
// and for signing, so that a consumer configured for another region reads
// the right Parameter Store and signs for the right region.
func TestNewTakesTheRegionFromTheURL(t *testing.T) {
	cfg := aws.Config{Region: "eu-west-1", Credentials: creds}
	tests := []struct{ url, want string }{
		{"https://abcdef1234.execute-api.ap-east-1.amazonaws.com", "ap-east-1"},
		{"https://abcdef1234.execute-api.cn-north-1.amazonaws.com.cn/", "cn-north-1"},
		{"https://tokens.example.com", "eu-west-1"},
		{"", "eu-west-1"},
	}
	for _, tt := range tests {
		c := client.New(cfg, "shop", tt.url)
		ssmRegion := ""
		if sc, ok := c.SSM.(*ssm.Client); ok {
			ssmRegion = sc.Options().Region
		}
		if c.Region != tt.want || ssmRegion != tt.want {
			t.Errorf("New(%q): signing region %q, SSM region %q; want %q", tt.url, c.Region, ssmRegion, tt.want)
		}
	}
}
