package faulthook_test

import (
	"context"
	"errors"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/testsupport/faulthook"
)

func TestHook(t *testing.T) {
	errBoom := errors.New("boom")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		ctx       context.Context
		fault     faulthook.Fault
		wantErr   error
		wantAfter bool
	}{
		{"no fault", context.Background(), faulthook.Fault{}, nil, false},
		{"a fault ends the call before the operation", context.Background(), faulthook.Fault{Err: errBoom}, errBoom, false},
		{"After lets the operation happen and returns the error", context.Background(), faulthook.Fault{Err: errBoom, After: true}, nil, true},
		{"a done context ends the call, hook or not", cancelled, faulthook.Fault{}, context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h faulthook.Hook[string]
			var asked string
			h.Set(func(op, key string) faulthook.Fault { asked = op + "/" + key; return tt.fault })
			ft, err := h.Begin(tt.ctx, "Put", "shop")
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantAfter && (!ft.After || ft.Err != errBoom) {
				t.Errorf("fault %+v, want the After fault to apply", ft)
			}
			if tt.ctx.Err() == nil && asked != "Put/shop" {
				t.Errorf("hook asked %q, want Put/shop", asked)
			}
			if h.Calls("Put") != 1 || h.Calls("Get") != 0 {
				t.Errorf("calls Put %d Get %d, want 1 and 0", h.Calls("Put"), h.Calls("Get"))
			}
		})
	}
}
