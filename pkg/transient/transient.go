// Package transient marks the AWS SDK errors that a later attempt may not
// see: throttling, a 5xx, a dropped connection, after the SDK's own retries
// were spent. The engine-backed packages (lease, tokenstore) mark them with
// their own sentinel, so that callers answer "retry shortly" instead of an
// internal error.
package transient

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
)

// Mark returns err marked so that errors.Is(err, sentinel) holds when the
// SDK's own retry rules call it a throttle or a retryable error; a caller's
// deadline or cancellation, and any other error, is returned as it is. The
// marked error's text is err's alone.
func Mark(err, sentinel error) error {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary ||
		retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return marked{err: err, sentinel: sentinel}
	}
	return err
}

// marked is an SDK error that Is its sentinel.
type marked struct{ err, sentinel error }

func (e marked) Error() string        { return e.err.Error() }
func (e marked) Unwrap() error        { return e.err }
func (e marked) Is(target error) bool { return target == e.sentinel }
