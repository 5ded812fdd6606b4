package wechat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// Error is an answer from WeChat carrying a non-zero errcode.
type Error struct {
	// Op is the API that answered: "token", "stable_token", "gettoken" or
	// "get_api_domain_ip". The same code can mean different things on a
	// credential call and on a business call (40001).
	Op string
	// Code is WeChat's errcode.
	Code int
	// Msg is WeChat's errmsg as received (it quotes the caller's IP for
	// whitelist errors and ends with the request id).
	Msg string
	// RID is the request id parsed from errmsg ("rid: ..."), for WeChat's
	// getRidInfo and for support tickets; empty when absent.
	RID string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("wechat: %s: errcode %d: %s", e.Op, e.Code, e.Msg)
}

// ErrCode returns WeChat's errcode, so that code outside this package (the
// consumer package's Do, for one) can read it through errors.As with a small
// interface.
func (e *Error) ErrCode() int { return e.Code }

// IP returns the caller IP that WeChat quoted in a whitelist error (40164,
// 61004, 60020), or "" when the message quotes none.
func (e *Error) IP() string {
	if m := ipRE.FindStringSubmatch(e.Msg); m != nil && net.ParseIP(m[1]) != nil {
		return m[1]
	}
	// Other wordings: the first word that is an IP address.
	for _, w := range strings.FieldsFunc(e.Msg, func(r rune) bool {
		return r == ' ' || r == ',' || r == '[' || r == ']' || r == '(' || r == ')' || r == ';'
	}) {
		w = strings.TrimPrefix(w, "::ffff:")
		if ip := net.ParseIP(w); ip != nil {
			return w
		}
	}
	return ""
}

var (
	ridRE = regexp.MustCompile(`rid:\s*([0-9A-Za-z-]+)`)
	// "invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist" and
	// "access clientip [1.2.3.4] is not registered" (61004) and WeCom's
	// "from ip: 1.2.3.4".
	ipRE = regexp.MustCompile(`(?i)(?:invalid ip|clientip|from ip:?)\s+\[?([0-9a-fA-F.:]+[0-9a-fA-F])\]?`)
)

func newError(op string, code int, msg string) *Error {
	e := &Error{Op: op, Code: code, Msg: msg}
	if m := ridRE.FindStringSubmatch(msg); m != nil {
		e.RID = m[1]
	}
	return e
}

// StatusError is an HTTP answer other than 200 from a WeChat host.
type StatusError struct {
	Op         string
	Host       string
	StatusCode int
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("wechat: %s: %s answered HTTP %d", e.Op, e.Host, e.StatusCode)
}

// ResponseError is a 200 answer that is not a usable WeChat response: not
// JSON, an HTML page, a body over the size limit, an empty token or a
// non-positive expires_in. It never carries the body, which may hold a token.
type ResponseError struct {
	Op     string
	Host   string
	Reason string
}

// Error implements error.
func (e *ResponseError) Error() string {
	return fmt.Sprintf("wechat: %s: unusable answer from %s: %s", e.Op, e.Host, e.Reason)
}

// TransportError is a failure to get any answer: connection refused or
// reset, DNS, TLS, a timeout. Unlike *url.Error it never prints the request
// URL (whose query holds the AppSecret or a token).
type TransportError struct {
	Op   string
	Host string
	// Sent reports whether the request may have reached WeChat (the failure
	// came after the connection was made), which matters for calls that are
	// not safe to repeat.
	Sent bool
	Err  error
}

// Error implements error.
func (e *TransportError) Error() string {
	return fmt.Sprintf("wechat: %s: request to %s failed: %v", e.Op, e.Host, e.Err)
}

// Unwrap returns the underlying network or context error.
func (e *TransportError) Unwrap() error { return e.Err }

// Class is what a caller should do about an error from this package.
type Class int

// The classes, from the refresher's point of view.
const (
	// ClassOther is an error this package does not classify (for example a
	// ResponseError, or a code WeChat does not document for these calls).
	ClassOther Class = iota
	// ClassRetryable: -1, HTTP 5xx, timeouts, connection errors. Retry with
	// backoff, possibly on another API domain.
	ClassRetryable
	// ClassMinuteQuota: 45011. Wait for the next minute.
	ClassMinuteQuota
	// ClassDailyQuota: 45009. Stop calling for the day and alert.
	ClassDailyQuota
	// ClassTokenInvalid: 40001, 40014, 42001 on a business call. The token
	// presented is no longer good.
	ClassTokenInvalid
	// ClassConfig: the account's set-up is wrong (appid, secret, IP
	// whitelist, frozen secret, third-party account, punishment, risk
	// control). No retry; a person must act.
	ClassConfig
	// ClassProgramming: a request WeChat considers malformed (40002, 41001,
	// 41002, 41004, 43002, 47001). A bug in the caller.
	ClassProgramming
	// ClassHourQuota: 45009 from WeCom, whose documented limits are
	// frequencies (gettoken: per minute and per hour, blocks of 60 s or
	// 60 min; jsapi tickets: 400 an hour a corporation, 100 an
	// application), not a daily count. Wait for the hour to turn.
	ClassHourQuota
)

var classNames = [...]string{"other", "retryable", "minute_quota", "daily_quota", "token_invalid", "config", "programming", "hour_quota"}

// String returns the class's short name, for logs and metric dimensions.
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// credentialOps are the calls whose 40001 means a wrong secret rather than a
// stale token.
func isCredentialOp(op string) bool {
	switch op {
	case OpToken, OpStableToken, OpWeComToken:
		return true
	}
	return false
}

// Classify returns the class of err, looking through wrapping. A nil error
// and an error not from this package are ClassOther, except for context
// deadlines, which are ClassRetryable (a later attempt may succeed).
func Classify(err error) Class {
	if err == nil || errors.Is(err, context.Canceled) {
		// A caller that gave up does not want the call repeated.
		return ClassOther
	}
	var we *Error
	if errors.As(err, &we) {
		return classifyCode(we.Op, we.Code)
	}
	var se *StatusError
	if errors.As(err, &se) {
		if se.StatusCode >= 500 {
			return ClassRetryable
		}
		return ClassOther
	}
	var te *TransportError
	if errors.As(err, &te) {
		return ClassRetryable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassRetryable
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return ClassRetryable
	}
	return ClassOther
}

func classifyCode(op string, code int) Class {
	switch code {
	case -1:
		return ClassRetryable
	case 45011:
		return ClassMinuteQuota
	case 45009:
		if op == OpWeComToken || op == OpWeComJSAPITicket || op == OpWeComAgentTicket {
			return ClassHourQuota
		}
		return ClassDailyQuota
	case 40001:
		if isCredentialOp(op) {
			return ClassConfig
		}
		return ClassTokenInvalid
	case 40014, 42001:
		return ClassTokenInvalid
	case 40013, 40125, 40164, 61004, 40243, 61024, 50004,
		89501, 89503, 89506, 89507,
		40091, 60020: // WeCom: invalid secret, IP not trusted
		return ClassConfig
	case 40002, 41001, 41002, 41004, 43001, 43002, 47001:
		return ClassProgramming
	}
	return ClassOther
}

// IsRetryable reports whether err is worth retrying soon (-1, HTTP 5xx,
// timeouts, connection errors).
func IsRetryable(err error) bool { return Classify(err) == ClassRetryable }

// IsMinuteQuota reports whether err is WeChat's per-minute limit (45011).
func IsMinuteQuota(err error) bool { return Classify(err) == ClassMinuteQuota }

// IsDailyQuota reports whether err is WeChat's daily quota (45009).
func IsDailyQuota(err error) bool { return Classify(err) == ClassDailyQuota }

// IsTokenInvalid reports whether err says the token presented on a business
// call is invalid, superseded or expired (40001, 40014, 42001).
func IsTokenInvalid(err error) bool { return Classify(err) == ClassTokenInvalid }

// IsSuperseded reports whether err says, on a business call, that the token
// presented is valid in form but no longer the latest (40001): another fetch
// replaced it, unlike an expired (42001) or malformed (40014) one.
func IsSuperseded(err error) bool {
	var we *Error
	return errors.As(err, &we) && we.Code == 40001 && !isCredentialOp(we.Op)
}

// IsConfig reports whether err needs a person to fix the account's set-up.
func IsConfig(err error) bool { return Classify(err) == ClassConfig }

// IsProgramming reports whether err says the request itself was malformed.
func IsProgramming(err error) bool { return Classify(err) == ClassProgramming }

// WhitelistIP returns the caller IP WeChat quoted when it refused the caller
// for its IP whitelist (40164, 61004, WeCom 60020), and whether err is such a
// refusal. The IP may be empty when WeChat quoted none.
func WhitelistIP(err error) (string, bool) {
	var we *Error
	if !errors.As(err, &we) {
		return "", false
	}
	switch we.Code {
	case 40164, 61004, 60020:
		return we.IP(), true
	}
	return "", false
}

// redact replaces every occurrence of the given secrets in s.
func redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}
