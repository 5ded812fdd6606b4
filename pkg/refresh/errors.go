package refresh

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// Errors callers branch on.
var (
	ErrUnknownApp = errors.New("refresh: unknown app")
	// ErrUnknownTicket: the app is registered but has not opted into the
	// ticket asked for.
	ErrUnknownTicket = errors.New("refresh: ticket not registered for the app")
	ErrLockTimeout   = errors.New("refresh: timed out waiting for the refresh in progress")
	// ErrUnverified: a caller claimed the published token invalid, WeChat
	// could not be asked (the check failed), and replacing the token
	// would rotate it for everybody; it was kept.
	ErrUnverified = errors.New("refresh: WeChat could not confirm that the token is invalid; it was kept")
)

// Refusal reasons of RefusedError.
const (
	ReasonDailyBudget = "daily_budget" // the app's daily budget of WeChat calls is used up
	ReasonMinInterval = "min_interval" // an on-demand refresh happened too recently
	ReasonBlocked     = "blocked"      // WeChat refused recently (quota or configuration); calls are paused
)

// RefusedError is a refresh the refresher declined to make. Current is the
// published token, which callers should keep using.
type RefusedError struct {
	App        string
	Reason     string
	RetryAfter time.Duration
	// ErrCode is WeChat's errcode behind a ReasonBlocked refusal, and Class
	// its policy class.
	ErrCode int
	Class   Class
	Current Result
}

// Error implements error.
func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("refresh: %s: refused (%s), retry after %s", e.App, e.Reason, e.RetryAfter.Round(time.Second))
	if e.ErrCode != 0 {
		msg += fmt.Sprintf(" (WeChat errcode %d)", e.ErrCode)
	}
	return msg
}

// FailedError is a refresh, made by another caller or instance, that this
// caller waited for and that failed; it repeats what was recorded: WeChat's
// errcode (0 when WeChat did not answer one) and the policy class.
type FailedError struct {
	App     string
	ErrCode int
	Class   Class
	Message string
}

// Error implements error.
func (e *FailedError) Error() string {
	return fmt.Sprintf("refresh: %s: the refresh in progress failed: %s", e.App, e.Message)
}

// TokenUnavailableError is a ticket's attempt that could not have the access
// token its WeChat call needs. The token's own failure is recorded on the
// token (and paged by its own outcome); the ticket takes neither its pause
// nor its errcode, and this error carries no credential.
type TokenUnavailableError struct {
	App    string
	Ticket registry.Ticket
	// TokenClass is the class of the token's failure.
	TokenClass Class
}

// Error implements error.
func (e *TokenUnavailableError) Error() string {
	return fmt.Sprintf("refresh: %s: no access token for the %s ticket (the token's refresh: %s)", e.App, e.Ticket, e.TokenClass)
}

// Result is a token handed to a caller.
type Result struct {
	App       string
	Token     string
	Version   int64     // 0: WeChat issued it but SSM does not hold it yet
	ExpiresAt time.Time // zero when unknown
	// Refreshed reports that the token is newer than the one the caller
	// presented (or that a WeChat call was made for it).
	Refreshed bool
	// RotatesAt is when the schedule plans to replace it (rotation.Meta's
	// RotatesAt); zero when ExpiresAt is unknown.
	RotatesAt time.Time
}

// String implements fmt.Stringer without the token.
func (r Result) String() string {
	return fmt.Sprintf("Result{app=%s fp=%s version=%d refreshed=%v}", r.App, wechat.Fingerprint(r.Token), r.Version, r.Refreshed)
}

// GoString implements fmt.GoStringer without the token.
func (r Result) GoString() string { return "refresh." + r.String() }

// LogValue implements slog.LogValuer without the token.
func (r Result) LogValue() slog.Value {
	return slog.GroupValue(slog.String("app", r.App), slog.String("fingerprint", wechat.Fingerprint(r.Token)),
		slog.Int64("version", r.Version), slog.Bool("refreshed", r.Refreshed))
}
