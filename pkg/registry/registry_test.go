package registry_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/registry/registrytest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
)

func TestDecode(t *testing.T) {
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
	tests := []struct {
		name    string
		app     string
		item    map[string]types.AttributeValue
		want    registry.App
		wantErr bool
	}{
		{"defaults, stable", "shop", map[string]types.AttributeValue{"appid": s("wx1"), "kind": s("offiaccount")},
			registry.App{Name: "shop", AppID: "wx1", Kind: registry.OfficialAccount, Mode: registry.Stable, RefreshMargin: 20 * time.Minute, DailyBudget: 1000, MinInterval: time.Minute}, false},
		{"classic with settings", "mp-1", map[string]types.AttributeValue{"appid": s("wx2"), "kind": s("miniprogram"), "mode": s("classic"),
			"refresh_margin_s": n("900"), "daily_budget": n("50"), "min_interval_s": n("30"), "disabled": &types.AttributeValueMemberBOOL{Value: true}},
			registry.App{Name: "mp-1", AppID: "wx2", Kind: registry.MiniProgram, Mode: registry.Classic, RefreshMargin: 15 * time.Minute, DailyBudget: 50, MinInterval: 30 * time.Second, Disabled: true}, false},
		{"wecom uses gettoken", "corp", map[string]types.AttributeValue{"appid": s("ww1"), "kind": s("wecom")},
			registry.App{Name: "corp", AppID: "ww1", Kind: registry.WeCom, Mode: registry.GetToken, RefreshMargin: 20 * time.Minute, DailyBudget: 1000, MinInterval: time.Minute}, false},
		{"classic default budget", "c", map[string]types.AttributeValue{"appid": s("wx3"), "kind": s("offiaccount"), "mode": s("classic")},
			registry.App{Name: "c", AppID: "wx3", Kind: registry.OfficialAccount, Mode: registry.Classic, RefreshMargin: 20 * time.Minute, DailyBudget: 200, MinInterval: time.Minute}, false},
		{"no appid", "x", map[string]types.AttributeValue{"kind": s("offiaccount")}, registry.App{}, true},
		{"unknown kind", "x", map[string]types.AttributeValue{"appid": s("wx"), "kind": s("fax")}, registry.App{}, true},
		{"unknown mode", "x", map[string]types.AttributeValue{"appid": s("wx"), "kind": s("offiaccount"), "mode": s("turbo")}, registry.App{}, true},
		{"wecom with stable mode", "x", map[string]types.AttributeValue{"appid": s("ww"), "kind": s("wecom"), "mode": s("stable")}, registry.App{}, true},
		{"negative budget", "x", map[string]types.AttributeValue{"appid": s("wx"), "kind": s("offiaccount"), "daily_budget": n("-1")}, registry.App{}, true},
		{"budget as a string", "x", map[string]types.AttributeValue{"appid": s("wx"), "kind": s("offiaccount"), "daily_budget": s("5")}, registry.App{}, true},
		{"bad name", "Shop!", map[string]types.AttributeValue{"appid": s("wx"), "kind": s("offiaccount")}, registry.App{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := registry.Decode(tt.app, tt.item)
			var ie *registry.InvalidError
			if tt.wantErr {
				if !errors.As(err, &ie) || ie.App != tt.app {
					t.Fatalf("got %v, want *InvalidError for %s", err, tt.app)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			if back, err := registry.Decode(tt.app, registry.Item(got)); err != nil || back != got {
				t.Errorf("Item round trip: %+v, %v", back, err)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{"shop": true, "a": true, "0-a": true, "-a": false, "A": false, "": false, "a_b": false,
		"a23456789012345678901234567890123456789012345678901234567890123":  true,
		"a234567890123456789012345678901234567890123456789012345678901234": false} {
		if got := registry.ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestContract runs the registry's contract against DynamoDB (Local): the
// engine is what the fake in registrytest is held to.
func TestContract(t *testing.T) {
	cfg := awstest.Config(t, awstest.DynamoDB)
	client := dynamodb.NewFromConfig(cfg)
	registrytest.Contract(t, func(t *testing.T) registrytest.Subject {
		table := awstest.Table(t, cfg)
		return engineRegistry{Registry: registry.New(client, table), t: t, client: client, table: table}
	})
}

// engineRegistry is a Registry on DynamoDB that can also write and delete
// app items, as an operator does.
type engineRegistry struct {
	*registry.Registry
	t      *testing.T
	client *dynamodb.Client
	table  string
}

func (r engineRegistry) Put(app registry.App) { r.PutItem(app.Name, registry.Item(app)) }

func (r engineRegistry) PutItem(name string, item map[string]types.AttributeValue) {
	r.t.Helper()
	item = maps.Clone(item)
	if item == nil {
		item = map[string]types.AttributeValue{}
	}
	item["pk"] = &types.AttributeValueMemberS{Value: "app#" + name}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(r.table), Item: item}); err != nil {
		r.t.Fatalf("put the item of %s: %v", name, err)
	}
}

func (r engineRegistry) Remove(name string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "app#" + name}}
	if _, err := r.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(r.table), Key: key}); err != nil {
		r.t.Fatalf("delete the item of %s: %v", name, err)
	}
}
