package registry_test

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

func TestTickets(t *testing.T) {
	base := func(kind registry.Kind, appid string, tickets types.AttributeValue) map[string]types.AttributeValue {
		item := map[string]types.AttributeValue{
			"pk":    &types.AttributeValueMemberS{Value: "app#shop"},
			"appid": &types.AttributeValueMemberS{Value: appid},
			"kind":  &types.AttributeValueMemberS{Value: string(kind)},
		}
		if tickets != nil {
			item["tickets"] = tickets
		}
		return item
	}
	ss := func(v ...string) types.AttributeValue { return &types.AttributeValueMemberSS{Value: v} }
	const oa, corp = "wx0123456789abcdef", "ww0123456789abcdef"
	tests := []struct {
		name    string
		item    map[string]types.AttributeValue
		want    string // the set, or "" with err set
		wantErr string
	}{
		{"none", base(registry.OfficialAccount, oa, nil), "", ""},
		{"Official Account", base(registry.OfficialAccount, oa, ss("wx_card", "jsapi")), "jsapi,wx_card", ""},
		{"WeCom", base(registry.WeCom, corp, ss("agent_config", "jsapi")), "agent_config,jsapi", ""},
		{"a Mini Program has none", base(registry.MiniProgram, oa, ss("jsapi")), "", "a Mini Program (miniprogram) has no tickets"},
		{"not an Official Account's", base(registry.OfficialAccount, oa, ss("agent_config")), "", `"agent_config" is not a ticket of an Official Account (offiaccount): want jsapi, wx_card`},
		{"not WeCom's", base(registry.WeCom, corp, ss("wx_card")), "", `"wx_card" is not a ticket of a WeCom app (wecom)`},
		{"not a set", base(registry.OfficialAccount, oa, &types.AttributeValueMemberS{Value: "jsapi"}), "", "tickets must be a string set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, err := registry.Decode("shop", tt.item)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode: %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if app.Tickets.String() != tt.want {
				t.Errorf("tickets %q, want %q", app.Tickets, tt.want)
			}
			again, err := registry.Decode("shop", registry.Item(app))
			if err != nil || again != app {
				t.Errorf("Item round trip: %+v (%v), want %+v", again, err, app)
			}
		})
	}
	set, err := registry.ParseTickets(registry.OfficialAccount, " jsapi, wx_card,jsapi ")
	if err != nil || set != registry.TicketSetOf(registry.TicketJSAPI, registry.TicketCard) || !set.Has(registry.TicketCard) || set.Has(registry.TicketAgentConfig) {
		t.Errorf("ParseTickets: %v %v", set, err)
	}
	if set, err := registry.ParseTickets(registry.WeCom, "none"); err != nil || set != 0 {
		t.Errorf("ParseTickets(none): %v %v", set, err)
	}
	if registry.TicketJSAPI.ParameterLeaf() != "jsapi_ticket" || registry.TicketAgentConfig.ParameterLeaf() != "agent_config_ticket" {
		t.Error("ParameterLeaf")
	}
}

// TestTicketsUseTheMargin: a stable app's margin decides when its tickets
// are refreshed, so the margin rules apply to it once it has tickets.
func TestTicketsUseTheMargin(t *testing.T) {
	app := func(margin time.Duration, tickets registry.TicketSet) registry.App {
		return registry.App{Name: "shop", AppID: "wx0123456789abcdef", Kind: registry.OfficialAccount, Mode: registry.Stable,
			RefreshMargin: margin, DailyBudget: registry.DefaultStableBudget, MinInterval: registry.DefaultMinInterval, Tickets: tickets}
	}
	jsapi := registry.TicketSetOf(registry.TicketJSAPI)
	tests := []struct {
		name    string
		app     registry.App
		invalid bool
	}{
		{"no tickets: any margin", app(time.Second, 0), false},
		{"tickets with the default margin", app(registry.DefaultRefreshMargin, jsapi), false},
		{"tickets with a margin under the minimum", app(time.Second, jsapi), true},
		{"tickets with a margin over the maximum", app(100*time.Minute, jsapi), true},
	}
	for _, tt := range tests {
		if err := registry.Validate(tt.app); (err != nil) != tt.invalid {
			t.Errorf("%s: Validate = %v, want invalid %v", tt.name, err, tt.invalid)
		}
	}
	// The scheduled run refuses a stored stable item whose tickets would be
	// due on every run.
	if _, err := registry.Decode("shop", registry.Item(app(7100*time.Second, jsapi))); err == nil {
		t.Error("Decode accepted tickets with a margin of 7100 s")
	}
	if _, err := registry.Decode("shop", registry.Item(app(7100*time.Second, 0))); err != nil {
		t.Errorf("Decode refused a stable app without tickets: %v", err)
	}
}
