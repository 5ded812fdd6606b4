package tokenstore

import (
	"errors"

	"github.com/wxtoken/wxtoken/pkg/transient"
)

// ErrUnavailable marks an error that SSM would likely not repeat a moment
// later: throttling, a 5xx, a dropped connection, after the SDK's own
// retries were spent. Callers answer it with "retry shortly", not as an
// internal error.
var ErrUnavailable = errors.New("tokenstore: SSM unavailable or throttled")

func unavailable(err error) error { return transient.Mark(err, ErrUnavailable) }
