package main

import (
	"errors"
	"fmt"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// clearQuotaAdvice is what a refusal of clear_quota/v2 means, by errcode;
// %[1]s is the app's name.
var clearQuotaAdvice = map[int]string{
	48006: "the account's 10 quota resets of this month are used up (the MP console's count too): the pause ends at Beijing midnight",
	40013: "WeChat does not know the appid: correct it with `wxtoken apps set %[1]s --appid wx...`",
	40125: "WeChat says the stored secret is wrong: replace it with `wxtoken apps secret %[1]s < secret.txt`",
	40164: "WeChat refused the call from your IP (clear_quota/v2 carries the AppSecret, so the account's IP whitelist may apply): run it from a whitelisted host, or reset the quota in the MP console",
	-1:    "WeChat was busy: try again in a minute",
}

// cmdAppsClearQuota resets the daily API call counts of an app's account
// with WeChat's clear_quota/v2 (appid and the stored AppSecret; no token
// needed), one of the account's 10 resets a month.
func cmdAppsClearQuota(s *session, args []string) error {
	name, be, err := s.appArgs(args, nil)
	if err != nil {
		return err
	}
	item, err := be.registered(s.ctx, name)
	if err != nil {
		return err
	}
	app, err := registry.Decode(name, item)
	if err != nil {
		return wrap(ExitInvalid, err, "read the registration of %s", name)
	}
	if app.Kind == registry.WeCom {
		return fail(ExitInvalid, "%s is a WeCom app: clear_quota is an Official Account / Mini Program API (WeCom's gettoken has no daily count to reset)", name)
	}
	secret, err := be.secret(s.ctx, name)
	if err != nil {
		return err
	}
	wx := &wechat.Client{HTTPClient: s.httpClient, BaseURLs: be.t.WeChatURLs}
	err = wx.ClearQuota(s.ctx, app.AppID, secret)
	var we *wechat.Error
	switch {
	case err == nil:
	case errors.As(err, &we):
		what, ok := clearQuotaAdvice[we.Code]
		if !ok {
			what = "see WeChat's clear_quota/v2 documentation"
		}
		return &cliError{code: ExitWeChat, msg: fmt.Sprintf("WeChat refused clear_quota for %s (errcode %d): %s", name, we.Code, expand(what, name, ""))}
	default:
		return wrap(ExitFailed, err, "call WeChat's clear_quota/v2 for %s", name)
	}
	if s.opts.json {
		return printJSON(s.out, struct {
			App     string `json:"app"`
			AppID   string `json:"appid"`
			Cleared bool   `json:"cleared"`
		}{name, app.AppID, true})
	}
	fmt.Fprintf(s.out, "Cleared the daily API call counts of %s's account %s (one of its 10 resets this month).\n", name, app.AppID)
	fmt.Fprintf(s.out, "Now run `wxtoken apps unblock %s` to end wxtoken's pause and get a token.\n", name)
	return nil
}
