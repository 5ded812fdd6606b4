package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// fakeSource is what business code writes to test against client.Source:
// a current token, and what Refresh answers.
type fakeSource struct {
	token     string
	fresh     string
	refreshed []string // the stale tokens Refresh was asked about
	err       error    // Refresh's error
}

func (f *fakeSource) Token(context.Context) (string, error) { return f.token, nil }

func (f *fakeSource) Refresh(_ context.Context, stale string) (string, error) {
	f.refreshed = append(f.refreshed, stale)
	return f.fresh, f.err
}

// TestDoWithAFakeSource: Do works with any Source; a rejected token is
// refreshed once with the token the call used and the call retried once;
// a Refresh that answers a token with an error (a 429) still retries.
func TestDoWithAFakeSource(t *testing.T) {
	rejected := &wechat.Error{Code: 40001, Msg: "invalid credential"}
	refused := &client.APIError{Status: 429, Code: "refresh_refused"}
	tests := []struct {
		name        string
		src         fakeSource
		rejectFresh bool // WeChat rejects the fresh token too
		wantRuns    int
		wantErr     error
		wantRefresh int
	}{
		{"accepted at once", fakeSource{token: "t1", fresh: "t2"}, false, 1, nil, 0},
		{"rejected, refreshed, retried", fakeSource{token: "stale", fresh: "t2"}, false, 2, nil, 1},
		{"a 429 that carries a new token: retried", fakeSource{token: "stale", fresh: "t2", err: refused}, false, 2, nil, 1},
		{"the same token back: no retry", fakeSource{token: "stale", fresh: "stale"}, false, 1, rejected, 1},
		{"rejected twice: returned, not looped on", fakeSource{token: "stale", fresh: "t2"}, true, 2, rejected, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			runs := 0
			err := client.Do(context.Background(), &src, func(_ context.Context, token string) error {
				runs++
				if token == "stale" || (tt.rejectFresh && token == src.fresh) {
					return rejected
				}
				return nil
			})
			if runs != tt.wantRuns || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) || len(src.refreshed) != tt.wantRefresh {
				t.Errorf("Do: %v after %d runs and %d refreshes; want %v after %d and %d", err, runs, len(src.refreshed), tt.wantErr, tt.wantRuns, tt.wantRefresh)
			}
			for _, stale := range src.refreshed {
				if stale != src.token {
					t.Errorf("Refresh asked about %q, want the token the call used", stale)
				}
			}
		})
	}
}
