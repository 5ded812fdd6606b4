package ticket_test

import (
	"fmt"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/ticket"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want ticket.Ticket
		ok   bool
		leaf string
	}{
		{"jsapi", ticket.JSAPI, true, "jsapi_ticket"},
		{"wx_card", ticket.Card, true, "wx_card_ticket"},
		{"agent_config", ticket.AgentConfig, true, "agent_config_ticket"},
		{"jsapi_ticket", "", false, ""},
		{"", "", false, ""},
		{"JSAPI", "", false, ""},
	}
	for _, tt := range tests {
		got, ok := ticket.Parse(tt.in)
		if ok != tt.ok || (ok && (got != tt.want || got.ParameterLeaf() != tt.leaf)) {
			t.Errorf("Parse(%q) = %q, %v (leaf %q); want %q, %v (leaf %q)", tt.in, got, ok, got.ParameterLeaf(), tt.want, tt.ok, tt.leaf)
		}
	}
	if all := ticket.All(); len(all) != 3 {
		t.Errorf("All() = %v, want the three tickets", all)
	}
}

// Where a ticket of app "shop" is published, under the stack's prefix.
func ExampleTicket_ParameterLeaf() {
	t, _ := ticket.Parse("jsapi")
	fmt.Println("/wxtoken/shop/" + t.ParameterLeaf())
	// Output: /wxtoken/shop/jsapi_ticket
}
