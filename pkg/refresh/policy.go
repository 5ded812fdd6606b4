package refresh

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// This file is the refresh policy: what a failure means (one table), when an
// app is due, and whether a WeChat call is admitted. Every function here is a
// pure function of the app, its state and the time; the holder, the waiters
// and the sweep call them, and pkg/api and pkg/schedule read the Decision
// instead of matching errcodes of their own.

// Class is what went wrong, as the policy sees it: WeChat's answer classes
// (named as wechat.Class names them) and the refresher's own.
type Class string

// The classes of the policy table.
const (
	ClassNone         Class = ""              // no failure
	ClassRetryable    Class = "retryable"     // WeChat: -1, HTTP 5xx, timeouts, network errors
	ClassMinuteQuota  Class = "minute_quota"  // WeChat: 45011
	ClassDailyQuota   Class = "daily_quota"   // WeChat: 45009
	ClassHourQuota    Class = "hour_quota"    // WeCom: 45009 (its limits are frequencies, per minute and per hour)
	ClassTokenInvalid Class = "token_invalid" // WeChat: 40001/40014/42001 on a business call
	ClassConfig       Class = "config"        // WeChat: the account's set-up (secret, appid, IP whitelist...)
	ClassProgramming  Class = "programming"   // WeChat: a request it calls malformed
	ClassOther        Class = "other"         // WeChat: an unusable answer or an undocumented code
	ClassUnavailable  Class = "aws_unavailable"
	ClassTimeout      Class = "timeout"     // the caller's or the lease's time ran out
	ClassInProgress   Class = "in_progress" // another refresh of the app did not finish in time
	ClassUnverified   Class = "unverified"  // a claim WeChat could not confirm or deny
	// ClassTokenUnavailable: a ticket's attempt could not have the access
	// token it needs (the token's own failure is the token's).
	ClassTokenUnavailable Class = "token_unavailable"
	// ClassInvalid: the app's registration (or this ticket of it) is one
	// the scheduled run rejects (registry.InvalidError).
	ClassInvalid  Class = "invalid_registration"
	ClassInternal Class = "internal" // anything else
)

// Pause is how long a failure stops further WeChat calls.
type Pause int

// The pauses.
const (
	PauseNone   Pause = iota
	PauseMinute       // until the next minute (45011)
	PauseDay          // until Beijing midnight (45009)
	PauseHour         // until the hour turns (WeCom's frequency limits)
	PauseConfig       // Refresher.ConfigBlock, or until the secret is replaced
)

// Decision is what the policy makes of one class of failure.
type Decision struct {
	Class Class
	// Retry: a later attempt may succeed without a person (the next run,
	// or the caller after RetryAfter).
	Retry bool
	// Pause stops calls to the API that answered (the normal or the forced
	// one) for a while; a success or a new secret ends it.
	Pause Pause
	// StartsInterval: an on-demand or forced attempt that failed this way
	// starts the app's minimum interval, because an immediate retry cannot
	// fix it. A success always starts it.
	StartsInterval bool
	// Page: a person must act, whatever the token's remaining life.
	// (Transient classes page only when the token is about to expire.)
	Page bool
	// HTTPStatus, Code and Message are the API's answer to a caller whose
	// refresh failed this way; RetryAfter is its Retry-After (0: none).
	HTTPStatus int
	Code       string
	Message    string
	RetryAfter time.Duration
}

// policy is the errcode policy (design P6), one row per class.
var policy = map[Class]Decision{
	ClassRetryable: {Retry: true, HTTPStatus: http.StatusBadGateway, Code: "wechat_unavailable", RetryAfter: 5 * time.Second,
		Message: "WeChat could not be reached or answered badly; the last good token stays published"},
	ClassMinuteQuota: {Retry: true, Pause: PauseMinute, HTTPStatus: http.StatusBadGateway, Code: "wechat_error", RetryAfter: time.Minute,
		Message: "WeChat's per-minute quota is used up (45011); the last good token stays published; retry next minute"},
	ClassDailyQuota: {Pause: PauseDay, StartsInterval: true, Page: true, HTTPStatus: http.StatusBadGateway, Code: "wechat_error",
		Message: "WeChat's daily quota is used up (45009); calls are paused until Beijing midnight or a clear_quota and a successful refresh"},
	ClassHourQuota: {Retry: true, Pause: PauseHour, HTTPStatus: http.StatusBadGateway, Code: "wechat_error", RetryAfter: time.Minute,
		Message: "WeCom's frequency limit is reached (45009); the last good token or ticket stays published; retried when the hour turns"},
	ClassConfig: {Pause: PauseConfig, StartsInterval: true, Page: true, HTTPStatus: http.StatusBadGateway, Code: "wechat_error",
		Message: "WeChat refused the app's credentials or IP (a person must fix the app's set-up); the last good token stays published"},
	ClassProgramming: {Pause: PauseConfig, StartsInterval: true, Page: true, HTTPStatus: http.StatusBadGateway, Code: "wechat_error",
		Message: "WeChat called the token request malformed; the last good token stays published"},
	ClassTokenInvalid: {Retry: true, HTTPStatus: http.StatusBadGateway, Code: "wechat_error", RetryAfter: 5 * time.Second,
		Message: "WeChat rejected a token; the last good token stays published"},
	ClassOther: {Retry: true, HTTPStatus: http.StatusBadGateway, Code: "wechat_unavailable", RetryAfter: 5 * time.Second,
		Message: "WeChat answered with something unusable; the last good token stays published"},
	ClassUnavailable: {Retry: true, HTTPStatus: http.StatusServiceUnavailable, Code: "aws_unavailable", RetryAfter: 2 * time.Second,
		Message: "AWS (DynamoDB or SSM) is throttling or unavailable; retry shortly"},
	ClassTimeout: {Retry: true, HTTPStatus: http.StatusServiceUnavailable, Code: "timeout", RetryAfter: time.Second,
		Message: "the refresh did not finish in time; the last good token stays published; retry shortly"},
	ClassInProgress: {Retry: true, HTTPStatus: http.StatusServiceUnavailable, Code: "refresh_in_progress", RetryAfter: time.Second,
		Message: "another refresh of this app is in progress and did not finish in time; retry shortly"},
	ClassUnverified: {Retry: true, HTTPStatus: http.StatusServiceUnavailable, Code: "claim_unverified", RetryAfter: 30 * time.Second,
		Message: "WeChat could not confirm that the token is invalid, so it was not replaced; keep using it and retry later"},
	ClassTokenUnavailable: {Retry: true, HTTPStatus: http.StatusServiceUnavailable, Code: "token_unavailable", RetryAfter: 30 * time.Second,
		Message: "the access token the ticket call needs could not be had (see the app's token status); the last good ticket stays published"},
	ClassInvalid: {Pause: PauseConfig, StartsInterval: true, Page: true, HTTPStatus: http.StatusConflict, Code: "invalid_registration",
		Message: "the app's registration (or this ticket of it) is rejected, so nothing is fetched for it; a person must fix it (the scheduled function's log and wxtoken apps list say why), then run wxtoken apps unblock"},
	ClassInternal: {HTTPStatus: http.StatusInternalServerError, Code: "internal", Message: "internal error"},
}

// Policy returns the decision for a class (ClassInternal's for an unknown one).
func Policy(c Class) Decision {
	d, ok := policy[c]
	if !ok {
		c = ClassInternal
		d = policy[c]
	}
	d.Class = c
	return d
}

// ClassOf classifies an error of a refresh: WeChat's answers by
// wechat.Classify, AWS throttling and outages, deadlines, unverifiable
// claims, and ClassInternal for the rest.
func ClassOf(err error) Class {
	var failed *FailedError
	var refused *RefusedError
	var noToken *TokenUnavailableError
	var invalid *registry.InvalidError
	switch {
	case err == nil:
		return ClassNone
	case errors.As(err, &invalid):
		return ClassInvalid
	case errors.As(err, &noToken):
		return ClassTokenUnavailable
	case errors.As(err, &failed):
		return recorded(failed.Class, failed.ErrCode)
	case errors.As(err, &refused):
		return recorded(refused.Class, refused.ErrCode)
	case errors.Is(err, ErrUnverified):
		return ClassUnverified
	case errors.Is(err, errNoSecret):
		return ClassConfig
	case errors.Is(err, lease.ErrUnavailable), errors.Is(err, tokenstore.ErrUnavailable):
		return ClassUnavailable
	case errors.Is(err, ErrLockTimeout):
		return ClassInProgress
	}
	var we *wechat.Error
	var te *wechat.TransportError
	var se *wechat.StatusError
	var re *wechat.ResponseError
	if errors.As(err, &we) || errors.As(err, &te) || errors.As(err, &se) || errors.As(err, &re) {
		return Class(wechat.Classify(err).String())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassTimeout
	}
	return ClassInternal
}

// recorded is the class of a failure as the state recorded it; a record
// without a class (written by an older version) is classified by its
// errcode, as a credential call's.
func recorded(c Class, code int) Class {
	switch {
	case c != ClassNone:
		return c
	case code != 0:
		return Class(wechat.Classify(&wechat.Error{Op: wechat.OpToken, Code: code}).String())
	}
	return ClassInternal
}

// Decide returns the policy's decision for an error of a refresh.
func Decide(err error) Decision { return Policy(ClassOf(err)) }

// ErrCode returns WeChat's errcode behind an error of a refresh, or 0 when
// WeChat did not answer one.
func ErrCode(err error) int {
	var failed *FailedError
	if errors.As(err, &failed) {
		return failed.ErrCode
	}
	var we *wechat.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

// lastErrorMessage is the last_error an app's state keeps, which status shows
// to every consumer: the policy's short message and WeChat's errcode, never
// the error's own text (AWS error text holds ARNs and request IDs, WeChat's
// errmsg the egress IP); the full cause is in the function's log.
func lastErrorMessage(d Decision, code int) string {
	if code != 0 {
		return fmt.Sprintf("errcode %d: %s", code, d.Message)
	}
	return d.Message
}

// failureFields is what a failed attempt records in the app's state: its own
// class, errcode (0 when WeChat did not answer one) and a short message, and the
// pause the policy asks for, scoped to the API that answered (forced calls
// have their own daily limit) and tied to the secret in use, so that a new
// secret ends it. On-demand and forced attempts start the minimum interval
// only when the decision says a retry cannot help.
func failureFields(cfg policyConfig, a registry.App, k kind, err error, now time.Time, secretVersion int64) lease.Fields {
	d := Decide(err)
	msg, class, code := lastErrorMessage(d, ErrCode(err)), string(d.Class), ErrCode(err)
	f := lease.Fields{LastError: &msg, LastErrorClass: &class, LastErrCode: &code, LastErrorAt: now}
	var until time.Time
	switch d.Pause {
	case PauseMinute:
		until = now.Truncate(time.Minute).Add(time.Minute)
	case PauseDay:
		until = nextBeijingMidnight(now)
	case PauseHour:
		until = now.Truncate(time.Hour).Add(time.Hour)
	case PauseConfig:
		until = now.Add(cfg.configBlock)
	}
	if !until.IsZero() {
		if k == force && a.Mode == registry.Stable && d.Pause != PauseConfig {
			// A quota answered to a forced stable_token call (its 20 a
			// day) says nothing about normal mode, which WeChat still
			// serves. (Classic and WeCom force the same API they use.)
			f.ForceBlockedUntil = &until
		} else {
			f.BlockedUntil = &until
		}
		sv := secretVersion
		f.BlockedSecretVersion = &sv
	}
	if (k == onDemand || k == force) && d.StartsInterval {
		f.LastOnDemandAt = now
	}
	return f
}

// supersedes reports whether a credential call of kind k for the app ends the
// published token when WeChat issues one: every classic call (after a
// 5-minute grace) and a forced stable call (at once).
func supersedes(a registry.App, k kind) bool {
	return a.Mode == registry.Classic || a.Mode == registry.Stable && k == force
}

// mayHaveIssued reports whether a failed credential call may still have
// made WeChat issue a token: any failure but an errcode answer or a request
// that never left.
func mayHaveIssued(err error) bool {
	var we *wechat.Error
	if errors.As(err, &we) {
		return false
	}
	var te *wechat.TransportError
	if errors.As(err, &te) {
		return te.Sent
	}
	return true
}

// policyConfig is the part of the Refresher's configuration the pure
// decisions read.
type policyConfig struct {
	stableWindow, stableSlack time.Duration
	configBlock               time.Duration
	verifiedFor               time.Duration
}

// sameAccount reports whether the state's committed token belongs to the
// app's current account (a state written before accounts were recorded
// counts as the same).
func sameAccount(a registry.App, st lease.State) bool {
	return st.AppID == "" || st.AppID == a.AppID && st.Kind == string(a.Kind)
}

// DueReason says why an app is due (or "" when it is not).
type DueReason string

// The reasons an app is due.
const (
	NotDue         DueReason = ""
	DueNoToken     DueReason = "no_token"        // never refreshed, or SSM does not hold the committed token
	DueUnpublished DueReason = "unpublished"     // a token was fetched but never reached SSM
	DueAccount     DueReason = "account_changed" // the app now names another account (appid or kind)
	DueMode        DueReason = "mode_changed"    // the app switched credential APIs
	DueSuperseded  DueReason = "superseded"      // a call that ends the published token may have issued one that was lost
	DueExpiry      DueReason = "expiry"          // classic/WeCom margin, or stable's final window
)

// due reports whether a scheduled run should refresh the app (P3). published
// is the token SSM holds ("" when none or unknown), and expiresAt its expiry
// when the table agrees that it is the committed one (zero otherwise).
func due(cfg policyConfig, a registry.App, st lease.State, publishedOK bool, expiresAt, now time.Time) DueReason {
	switch {
	case st.HasToken() && st.Version == 0 && st.Pending != "":
		return DueUnpublished
	case !st.HasToken() || !publishedOK || expiresAt.IsZero():
		return DueNoToken
	case st.SupersededAt.After(st.FetchedAt):
		return DueSuperseded
	case !sameAccount(a, st):
		return DueAccount
	case st.Mode != string(a.Mode):
		return DueMode
	case !now.Before(rotatesAt(cfg, a, expiresAt)):
		return DueExpiry
	}
	return NotDue
}

// rotatesAt is when the schedule replaces a value of a (the credential's
// rules) that expires at expiresAt: in stable mode inside WeChat's final
// window (less a slack for the schedule's period), otherwise RefreshMargin
// before it expires. Zero for an unknown expiry. Consumers read it
// (rotation.Meta) to know when to read again.
func rotatesAt(cfg policyConfig, a registry.App, expiresAt time.Time) time.Time {
	switch {
	case expiresAt.IsZero():
		return time.Time{}
	case a.Mode == registry.Stable:
		return expiresAt.Add(-(cfg.stableWindow - cfg.stableSlack))
	default:
		return expiresAt.Add(-a.RefreshMargin)
	}
}

// dailyFor is how many credential calls a scheduled refresh needs in a
// Beijing day, doubled for retries: the basis of ScheduleReserve.
func dailyFor(a registry.App) int {
	const life = 7200 * time.Second
	period := life - a.RefreshMargin
	if a.Mode == registry.Stable {
		period = life
	}
	if period < time.Minute {
		period = time.Minute
	}
	return 2 * int(math.Ceil(float64(24*time.Hour)/float64(period)))
}

// ScheduleReserve is the part of an app's daily budget that callers' claims
// and ensure requests may not spend, so that the schedule can always refresh:
// twice what the schedule needs in a day, at most half the budget.
func ScheduleReserve(a registry.App) int {
	return min(dailyFor(a), a.DailyBudget/2)
}

// refusal is a reason not to call WeChat, decided from the state alone.
type refusal struct {
	reason     string
	retryAfter time.Duration
	errCode    int
	class      Class
}

// admit decides whether a WeChat call of kind k is admitted for the app at
// now (P6, P7): not while a pause for that API lasts (unless the secret was
// replaced since: secretVersion, 0 when unknown), not over the budget (callers
// keep the schedule's reserve), not within the minimum interval of the last
// on-demand refresh. It returns nil when admitted.
func admit(a registry.App, st lease.State, k kind, now time.Time, secretVersion int64) *refusal {
	blocked := st.BlockedUntil
	if k == force {
		blocked = st.ForceBlockedUntil
	}
	// A pause records the secret's version when it began (-1: there was no
	// secret); a secret written since ends it.
	newSecret := st.BlockedSecretVersion != 0 && secretVersion > 0 && secretVersion != st.BlockedSecretVersion
	if blocked.After(now) && !newSecret {
		return &refusal{reason: ReasonBlocked, retryAfter: blocked.Sub(now), errCode: st.LastErrCode, class: Class(st.LastErrorClass)}
	}
	budget := a.DailyBudget
	if k == onDemand || k == ensure {
		budget -= ScheduleReserve(a)
	}
	if callsToday(st, now) >= budget {
		return &refusal{reason: ReasonDailyBudget, retryAfter: nextBeijingMidnight(now).Sub(now)}
	}
	if (k == onDemand || k == force) && !st.LastOnDemandAt.IsZero() && now.Sub(st.LastOnDemandAt) < a.MinInterval {
		return &refusal{reason: ReasonMinInterval, retryAfter: a.MinInterval - now.Sub(st.LastOnDemandAt)}
	}
	return nil
}

// pausedFor reports whether a pause for kind k's API is in force at now, so
// that a caller needs the secret's version to know whether a replaced secret
// ended it.
func pausedFor(st lease.State, k kind, now time.Time) bool {
	if k == force {
		return st.ForceBlockedUntil.After(now)
	}
	return st.BlockedUntil.After(now)
}

// verified reports whether WeChat accepted the token with fingerprint fp
// within the last verifiedFor (P8): a claim against it is answered without
// another check.
func verified(cfg policyConfig, st lease.State, fp string, now time.Time) bool {
	return fp != "" && st.VerifiedFP == fp && !st.VerifiedAt.IsZero() && now.Sub(st.VerifiedAt) < cfg.verifiedFor
}

// callsToday is the app's WeChat credential calls on now's Beijing day.
func callsToday(st lease.State, now time.Time) int {
	if st.CallsDay == beijingDay(now) {
		return st.CallsToday
	}
	return 0
}

var beijing = time.FixedZone("CST", 8*3600)

// beijingDay is the date WeChat's daily quotas count in.
func beijingDay(t time.Time) string { return t.In(beijing).Format(time.DateOnly) }

func nextBeijingMidnight(t time.Time) time.Time {
	b := t.In(beijing)
	return time.Date(b.Year(), b.Month(), b.Day()+1, 0, 0, 0, 0, beijing)
}
