package wechat_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// TestTickets: each ticket call answers a ticket the sandbox accepts, with
// its lifetime; a bad access token is IsTokenInvalid (the token, not the
// ticket); the access token is in no error.
func TestTickets(t *testing.T) {
	srv, c := sandbox(t, wechattest.Config{})
	ctx := context.Background()
	oa, err := c.StableToken(ctx, appID, secret, false)
	if err != nil {
		t.Fatal(err)
	}
	ww, err := c.WeComToken(ctx, corpID, corpSc)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		call  func(token string) (wechat.Token, error)
		token string
		appID string
		typ   wechattest.TicketType
	}{
		{"jsapi", func(tok string) (wechat.Token, error) { return c.Ticket(ctx, tok, wechat.TicketJSAPI) }, oa.AccessToken, appID, wechattest.TicketJSAPI},
		{"wx_card", func(tok string) (wechat.Token, error) { return c.Ticket(ctx, tok, wechat.TicketCard) }, oa.AccessToken, appID, wechattest.TicketCard},
		{"WeCom jsapi", func(tok string) (wechat.Token, error) { return c.WeComJSAPITicket(ctx, tok) }, ww.AccessToken, corpID, wechattest.TicketWeComJSAPI},
		{"WeCom agent_config", func(tok string) (wechat.Token, error) { return c.WeComAgentTicket(ctx, tok) }, ww.AccessToken, corpID, wechattest.TicketAgentConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk, err := tt.call(tt.token)
			if err != nil {
				t.Fatal(err)
			}
			if code := srv.CheckTicket(tt.appID, tt.typ, tk.AccessToken); code != 0 || tk.ExpiresIn != 7200*time.Second || !tk.ExpiresAt.Equal(tk.FetchedAt.Add(tk.ExpiresIn)) {
				t.Errorf("ticket check %d, expires_in %v, expires at %v", code, tk.ExpiresIn, tk.ExpiresAt)
			}
			bad := "BAD-" + tt.token
			_, err = tt.call(bad)
			var we *wechat.Error
			if !errors.As(err, &we) || we.Code != 40014 || !wechat.IsTokenInvalid(err) {
				t.Errorf("a token never issued: %v, want 40014, token invalid", err)
			}
			if err != nil && (strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), tt.token)) {
				t.Errorf("the error holds the access token: %v", err)
			}
		})
	}
	// 40001 on a ticket call is the token's (superseded), never a wrong
	// secret.
	old, err := c.Token(ctx, appID, secret)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.Token(ctx, appID, secret); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.Ticket(ctx, old.AccessToken, wechat.TicketJSAPI)
	if !wechat.IsTokenInvalid(err) || !wechat.IsSuperseded(err) {
		t.Errorf("a superseded token: %v, want token invalid (40001)", err)
	}
	// Unusable answers are no ticket.
	for _, f := range []wechattest.Fault{
		{Path: wechattest.PathTicket, Body: `{"errcode":0,"errmsg":"ok","expires_in":7200}`, ContentType: "application/json"},
		{Path: wechattest.PathTicket, Body: `{"errcode":0,"errmsg":"ok","ticket":"x","expires_in":0}`, ContentType: "application/json"},
		{Path: wechattest.PathTicket, Body: `{"errcode":0,"errmsg":"ok","ticket":"a b","expires_in":7200}`, ContentType: "application/json"},
	} {
		srv.Inject(wechattest.Fault{Path: f.Path, Body: f.Body, ContentType: f.ContentType, Times: 1})
		var re *wechat.ResponseError
		if _, err := c.Ticket(ctx, oa.AccessToken, wechat.TicketJSAPI); !errors.As(err, &re) {
			t.Errorf("answer %s: %v, want a *ResponseError", f.Body, err)
		}
	}
	// -1 is retried.
	srv.Inject(wechattest.Fault{Path: wechattest.PathWeComJSAPITicket, ErrCode: -1, Times: 1})
	if _, err := c.WeComJSAPITicket(ctx, ww.AccessToken); err != nil {
		t.Errorf("after -1: %v, want a retried success", err)
	}
}
