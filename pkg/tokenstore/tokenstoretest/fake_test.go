package tokenstoretest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
)

// TestContract holds the fake to the token store's semantics; the same
// suite runs against SSM in package tokenstore.
func TestContract(t *testing.T) {
	tokenstoretest.Contract(t, func(*testing.T) tokenstoretest.Subject { return tokenstoretest.New("/test") })
}

// TestNames checks that New defaults and trims the prefix as tokenstore.New
// does.
func TestNames(t *testing.T) {
	tests := []struct {
		name, prefix, token, secret string
	}{
		{"default prefix", "", "/wechat/shop/access_token", "/wechat/shop/secret"},
		{"trailing slash", "/prod/wx/", "/prod/wx/shop/access_token", "/prod/wx/shop/secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, s := tokenstoretest.New(tt.prefix), tokenstore.New(nil, tt.prefix, "")
			if got, want := f.TokenName("shop"), s.TokenName("shop"); got != want || got != tt.token {
				t.Errorf("TokenName = %s, store's %s, want %s", got, want, tt.token)
			}
			if got, want := f.SecretName("shop"), s.SecretName("shop"); got != want || got != tt.secret {
				t.Errorf("SecretName = %s, store's %s, want %s", got, want, tt.secret)
			}
		})
	}
}

// TestFault checks the fault hook: an error before the operation writes
// nothing, an error after it (After) writes and still fails.
func TestFault(t *testing.T) {
	ctx := context.Background()
	lost := errors.New("connection reset")
	tests := []struct {
		name        string
		fault       tokenstoretest.Fault
		wantErr     error
		wantVersion int64
	}{
		{"none", tokenstoretest.Fault{}, nil, 1},
		{"throttled before the write", tokenstoretest.Fault{Err: tokenstoretest.Throttled()}, tokenstore.ErrUnavailable, 0},
		{"answer lost after the write", tokenstoretest.Fault{Err: lost, After: true}, lost, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tokenstoretest.New("")
			f.SetFault(func(op tokenstoretest.Op, app string) tokenstoretest.Fault {
				if op == tokenstoretest.OpPut && app == "shop" {
					return tt.fault
				}
				return tokenstoretest.Fault{}
			})
			_, err := f.Put(ctx, "shop", "tok")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Put: %v, want %v", err, tt.wantErr)
			}
			v, err := f.Version(ctx, "shop")
			if tt.wantVersion == 0 && !errors.Is(err, tokenstore.ErrNotFound) || tt.wantVersion != 0 && v != tt.wantVersion {
				t.Errorf("Version after the call = %d (error %v), want %d", v, err, tt.wantVersion)
			}
		})
	}
}

// TestCallsAndDelete counts SSM calls per operation (a test can assert that
// a path read no secret) and checks that a deleted parameter starts again at
// version 1.
func TestCallsAndDelete(t *testing.T) {
	ctx := context.Background()
	f := tokenstoretest.New("")
	f.PutSecret("shop", "s1")
	_, _ = f.SecretVersion(ctx, "shop")
	_, _, _ = f.Get(ctx, "shop") // not found, counted
	for op, want := range map[tokenstoretest.Op]int{tokenstoretest.OpSecretVersion: 1, tokenstoretest.OpGet: 1, tokenstoretest.OpSecret: 0, tokenstoretest.OpPut: 0} {
		if got := f.Calls(op); got != want {
			t.Errorf("Calls(%s) = %d, want %d", op, got, want)
		}
	}
	if !f.Delete(f.SecretName("shop")) || f.Delete(f.SecretName("shop")) {
		t.Errorf("Delete: want true for an existing parameter, then false")
	}
	if v := f.PutSecret("shop", "s2"); v != 1 {
		t.Errorf("PutSecret after Delete: version %d, want 1", v)
	}
}
