package lease

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
)

// ErrUnavailable marks an error that DynamoDB would likely not repeat a
// moment later: throttling, a 5xx, a dropped connection, after the SDK's own
// retries were spent. Callers answer it with "retry shortly", not as an
// internal error.
var ErrUnavailable = errors.New("lease: DynamoDB unavailable or throttled")

// unavailable adds ErrUnavailable to err when the SDK's own retry rules
// call it a throttle or a retryable error; a caller's deadline or
// cancellation is left as it is.
func unavailable(err error) error {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary ||
		retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return unavailableError{err}
	}
	return err
}

// unavailableError is an SDK error that Is ErrUnavailable; its text is the
// SDK error's alone.
type unavailableError struct{ err error }

func (e unavailableError) Error() string        { return e.err.Error() }
func (e unavailableError) Unwrap() error        { return e.err }
func (e unavailableError) Is(target error) bool { return target == ErrUnavailable }
