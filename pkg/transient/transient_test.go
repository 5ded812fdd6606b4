package transient_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/transient"
)

var errSentinel = errors.New("unavailable")

func TestMark(t *testing.T) {
	throttled := &ddbtypes.ProvisionedThroughputExceededException{Message: new("slow down")}
	tests := []struct {
		name   string
		err    error
		marked bool
	}{
		{"nil", nil, false},
		{"throttled", fmt.Errorf("operation UpdateItem: %w", throttled), true},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), false},
		{"a condition that failed", &ddbtypes.ConditionalCheckFailedException{}, false},
		{"anything else", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := transient.Mark(tt.err, errSentinel)
			if errors.Is(got, errSentinel) != tt.marked {
				t.Errorf("marked %v, want %v", errors.Is(got, errSentinel), tt.marked)
			}
			if tt.err != nil && (got.Error() != tt.err.Error() || !errors.Is(got, tt.err)) {
				t.Errorf("Mark changed the error: %q", got)
			}
		})
	}
}
