package main

import (
	"fmt"
	"strings"

	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
)

// advice is what a WeChat refusal means and what the operator does about
// it, in words (README "Runbook by errcode").
type advice struct {
	// Problem says what WeChat refused.
	Problem string `json:"problem"`
	// Fix says what to do; %[1]s is the app's name, %[2]s the IP WeChat
	// quoted.
	Fix string `json:"fix"`
}

// Fixes shared by several errcodes.
const (
	fixWhitelist = "add %[2]s to the account's IP whitelist (公众号/小程序: 开发 → 基本配置 → IP白名单), then run `wxtoken apps unblock %[1]s`"
	fixSecret    = "put the right secret with `wxtoken apps secret %[1]s < secret.txt`; the pause this caused ends by itself at the next scheduled run"
	fixAppID     = "correct it with `wxtoken apps set %[1]s --appid wx...`, then run `wxtoken apps unblock %[1]s`"
	fixBug       = "this is a wxtoken bug: open an issue with the function's refresh_failed log line (it names the errcode and the rid, never the secret); the app stays paused for 30 minutes"
)

// advices maps WeChat's errcodes on a credential call to advice.
var advices = map[int]advice{
	40164: {"WeChat refused the call from IP %[2]s: it is not on the account's IP whitelist", fixWhitelist},
	61004: {"WeChat refused the call from IP %[2]s: it is not on the account's IP whitelist", fixWhitelist},
	60020: {"WeCom refused the call from IP %[2]s: it is not among the application's trusted IPs", "add %[2]s to the application's 企业可信IP (应用管理 → the application → 企业可信IP), then run `wxtoken apps unblock %[1]s`"},
	40125: {"WeChat says the AppSecret is wrong (or was reset)", fixSecret},
	40001: {"WeChat says the AppSecret is wrong (or was reset, or belongs to another account)", fixSecret},
	40091: {"WeCom says the corpsecret is wrong (or belongs to another corp)", fixSecret},
	40013: {"WeChat says the appid (WeCom: corpid) is wrong", fixAppID},
	40243: {"the AppSecret is frozen", "unfreeze it in the MP console (it takes effect after 10 minutes), then run `wxtoken apps unblock %[1]s`"},
	-1:    {"WeChat was busy or unreachable", "nothing: wxtoken retries at the next scheduled run without a pause; if it lasts, check the functions' egress (NAT, security group)"},
	45011: {"the account's per-minute quota of token calls is used up", "nothing: wxtoken waits for the next minute; if it happens often, find who else calls with this secret"},
	45009: {"the account's daily quota of token calls is used up", "find who else spends it (calls today shows wxtoken's share); the pause ends at Beijing midnight, or, if the token expires first, clear the quota with `wxtoken apps clear-quota %[1]s` (10 times a month) and run `wxtoken apps unblock %[1]s`"},
	40002: {"WeChat called the token request malformed (invalid grant_type)", fixBug},
	41001: {"WeChat called the token request malformed (a parameter is missing)", fixBug},
	41002: {"WeChat called the token request malformed (appid missing)", fixBug},
	41004: {"WeChat called the token request malformed (secret missing)", fixBug},
	43002: {"WeChat called the token request malformed (wrong HTTP method)", fixBug},
	50004: {"WeChat forbids this account to use access tokens (a penalty)", "read the notices in the MP console; once the ban is lifted, run `wxtoken apps unblock %[1]s`"},
	61024: {"this is a third-party-platform appid, which needs the component token flow (wxtoken does not do it)", "remove the app: `wxtoken apps remove %[1]s`"},
	89501: {"WeChat holds the call from a new IP for the administrator's confirmation", "confirm on the administrator's WeChat, whitelist the IP, then run `wxtoken apps unblock %[1]s`"},
	89503: {"WeChat wants the administrator to confirm calls from this IP", "confirm on the administrator's WeChat, whitelist the IP, then run `wxtoken apps unblock %[1]s`"},
	89506: {"the administrator rejected calls from this IP (retry in 24 hours)", "whitelist the IP, wait out the block, then run `wxtoken apps unblock %[1]s`"},
	89507: {"the administrator rejected calls from this IP (retry in 1 hour)", "whitelist the IP, wait out the block, then run `wxtoken apps unblock %[1]s`"},
}

// driftAdvice is what to do about a token rotated behind wxtoken's back,
// by the app's mode.
func driftAdvice(app string, mode registry.Mode) string {
	switch mode {
	case registry.Stable:
		return "something calls stable_token with force_refresh using this secret (another deployment, a script): find it and stop it"
	case registry.GetToken:
		return "WeCom ended the token early (it may), or someone reset the corpsecret: act only if it repeats, and then find who else holds the corpsecret"
	}
	return fmt.Sprintf("find the other fetcher and stop it (old deployments, SDK defaults, a colleague's script); stable tokens are not rotated by others' normal calls: `wxtoken apps set %s --mode stable`", app)
}

// hourQuotaAdvice is the advice for WeCom's 45009 (the class hour_quota):
// a frequency limit, not WeChat's daily quota.
var hourQuotaAdvice = advice{
	Problem: "WeCom's frequency limit is reached (45009): too many calls this hour with this corpsecret, or by the corporation",
	Fix:     "nothing: wxtoken asks again when the hour turns; if it repeats, find who else calls with the corpsecret",
}

// adviceOf is the advice for a recorded failure: by its class where the
// class decides (WeCom's 45009), else by its errcode (adviceFor).
func adviceOf(class string, code int, app, ip string) advice {
	if class == string(refresh.ClassHourQuota) {
		return hourQuotaAdvice
	}
	return adviceFor(code, app, ip)
}

// adviceFor returns the advice for errcode code answered for app, with the
// IP WeChat quoted ("" when unknown).
func adviceFor(code int, app, ip string) advice {
	a, ok := advices[code]
	if !ok {
		return advice{
			Problem: fmt.Sprintf("WeChat answered errcode %d", code),
			Fix:     fmt.Sprintf("see the runbook (README, Operations) and `wxtoken apps show %s`", app),
		}
	}
	if ip == "" {
		ip = "the IP WeChat quoted (the whitelist_ip of the functions' \"refresh_failed\" log lines)"
	}
	return advice{Problem: expand(a.Problem, app, ip), Fix: expand(a.Fix, app, ip)}
}

// expand fills the app's name and the IP in a template that may use
// either.
func expand(tmpl, app, ip string) string {
	r := strings.NewReplacer("%[1]s", app, "%[2]s", ip)
	return r.Replace(tmpl)
}
