package main

import (
	"fmt"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
)

// commands is every subcommand, in the order help lists them.
var commands = []command{
	{name: "apps add", args: "NAME --appid ID --kind offiaccount|miniprogram|wecom [--mode stable|classic] [--budget N] [--margin SECONDS] [--tickets LIST] < secret",
		summary: "register an app: its secret (from stdin) in SSM, its item in the table, then ask the API for its first token",
		detail:  addDetail, run: cmdAppsAdd},
	{name: "apps list", args: "", summary: "every app: kind, mode, token expiry, calls today of budget, pause, last error, drift", run: cmdAppsList},
	{name: "apps show", args: "NAME", summary: "one app in detail (never its token or secret)", run: cmdAppsShow},
	{name: "apps set", args: "NAME [--mode stable|classic] [--budget N] [--margin SECONDS] [--disabled true|false] [--appid ID] [--tickets LIST|none]",
		summary: "change an app's registration (validated like apps add)", detail: setDetail, run: cmdAppsSet},
	{name: "apps secret", args: "NAME < secret", summary: "replace an app's secret (from stdin); a pause caused by a wrong secret ends at the next scheduled run",
		run: cmdAppsSecret},
	{name: "apps unblock", args: "NAME", summary: "end an app's pause after you fixed its cause (whitelist, appid...), then ask for a token",
		detail: unblockDetail, run: cmdAppsUnblock},
	{name: "apps clear-quota", args: "NAME", summary: "reset the daily API call counts of an app's account (WeChat's clear_quota/v2, 10 a month) after a 45009",
		detail: clearQuotaDetail, run: cmdAppsClearQuota},
	{name: "apps remove", args: "NAME [--keep-secret]", summary: "delete an app: its registration, secret, published token and state",
		run: cmdAppsRemove},
	{name: "token", args: "NAME", summary: "print an app's live token, for debugging (a warning goes to stderr)", run: cmdToken},
}

var addDetail = fmt.Sprintf(`The secret (AppSecret; WeCom: the application's corpsecret) is read from stdin,
the first line, or typed at a prompt without echo: never from the command line.
It is stored as a SecureString at {prefix}/NAME/secret, with the stack's KMS key
(parameter KmsKeyArn) when it has one, otherwise SSM's default key.

The registration is refused (exit 4) when the name is taken or not
[a-z0-9][a-z0-9-]{0,62}; the appid does not have its kind's shape (wx + 16 hex
digits; WeCom corpids ww or wx + 16); another app has the same appid (WeCom
corpids may repeat); --margin is outside %d..%d s; or --budget is under what
the schedule needs a day (%d stable, %d classic/WeCom with the default margin) or
over half WeChat's daily limit (classic %d, stable %d, WeCom %d).

Then the API is asked for the first token (POST /v1/apps/NAME/refresh, SigV4-
signed for a stack). When WeChat refuses (exit 5), the app stays registered and
the message says what to fix: 40164 the IP to whitelist, 40125/40001 the
secret, 40013 the appid.

--tickets keeps tickets fresh beside the token, each published at
{prefix}/NAME/{ticket}_ticket: jsapi and wx_card for an Official Account,
jsapi (the corporation's, for wx.config) and agent_config (the application's,
for wx.agentConfig) for WeCom; a Mini Program has none.

Example:
  wxtoken --stack wxtoken apps add shop --appid wx0123456789abcdef --kind offiaccount < secret.txt`,
	int(registry.MinRefreshMargin/time.Second), int(registry.MaxRefreshMargin/time.Second),
	registry.MinDailyBudget(registry.App{Mode: registry.Stable, RefreshMargin: registry.DefaultRefreshMargin}),
	registry.MinDailyBudget(registry.App{Mode: registry.Classic, RefreshMargin: registry.DefaultRefreshMargin}),
	registry.MaxClassicBudget, registry.MaxStableBudget, registry.MaxWeComBudget)

const setDetail = `Only the given settings change; the others keep their value (or default).
--disabled true keeps the registration but stops refreshing. A new --appid or
--mode makes the next scheduled run fetch a token for it. After fixing an appid
WeChat refused (40013), run ` + "`wxtoken apps unblock NAME`" + `.`

const unblockDetail = `After a configuration error (IP whitelist, appid, frozen secret) wxtoken
pauses the app's WeChat calls for 30 minutes; after 45009 until Beijing
midnight (WeCom's 45009, a frequency limit: until the hour turns, no unblock
needed). Once you fixed the cause, unblock clears the pause (under the app's
lease, so it never races a refresh) and asks the API for a token, which is
fetched only if none valid is published. It also ends the pauses of the
app's tickets, which the next scheduled run then fetches. A replaced secret
needs no unblock: its pause ends at the next scheduled run.`

const clearQuotaDetail = `After 45009 (the account's daily quota is used up) wxtoken pauses the app's
token calls until Beijing midnight. If its token expires first, clear the
quota: this calls WeChat's clear_quota/v2 from your machine with the appid
and the secret stored in SSM (no token needed; nothing is printed of the
secret). WeChat allows 10 resets a month per account, the MP console's
included. Then run ` + "`wxtoken apps unblock NAME`" + ` to end wxtoken's pause.

clear_quota/v2 carries the AppSecret, so the account's IP whitelist may apply
to it: run it from a whitelisted host, or reset the quota in the MP console.
Official Accounts and Mini Programs only (WeCom's gettoken has no daily count).`
