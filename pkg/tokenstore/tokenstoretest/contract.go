package tokenstoretest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
)

// Store is the method set of *tokenstore.Store, which Fake shares.
type Store interface {
	Put(ctx context.Context, app, token string) (int64, error)
	Get(ctx context.Context, app string) (string, int64, error)
	GetVersion(ctx context.Context, app string, version int64) (string, error)
	Version(ctx context.Context, app string) (int64, error)
	Secret(ctx context.Context, app string) (string, int64, error)
	SecretVersion(ctx context.Context, app string) (int64, error)
	PutMeta(ctx context.Context, key string, m rotation.Meta) error
	GetMeta(ctx context.Context, key string) (rotation.Meta, error)
	TokenName(app string) string
	MetaName(key string) string
	SecretName(app string) string
}

// Subject is what Contract checks: a store, and a way to write an app's
// secret as an operator does (creating or overwriting the parameter,
// returning its new version; failing the test on error).
type Subject interface {
	Store
	PutSecret(app, secret string) int64
}

var (
	_ Store   = (*tokenstore.Store)(nil)
	_ Subject = (*Fake)(nil)
)

// Contract runs the token store's semantics against the stores newStore
// returns, one fresh and empty store (its own prefix) per subtest: versions
// starting at 1 and going up by one per write, old versions readable,
// not-found errors for a missing parameter or version (wrapping ErrNotFound
// and the SDK's error, naming the parameter, never the value), secrets and
// their versions, the last MaxVersions versions kept, an empty value refused.
// Run it against *tokenstore.Store on SSM and against Fake, so that the fake
// cannot drift from the engine.
func Contract(t *testing.T, newStore func(t *testing.T) Subject) {
	t.Helper()
	for _, c := range contractCases() {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c.run(t, ctx, newStore(t))
		})
	}
}

type contractCase struct {
	name string
	run  func(t *testing.T, ctx context.Context, s Subject)
}

// token returns a token-like value; tokens are long, and none may appear in
// an error.
func token(n int) string { return fmt.Sprintf("token-%d-%s", n, strings.Repeat("x", 120)) }

func contractCases() []contractCase {
	return []contractCase{
		{"parameter names", func(t *testing.T, _ context.Context, s Subject) {
			tok, sec := s.TokenName("shop"), s.SecretName("shop")
			prefix, ok := strings.CutSuffix(tok, "/shop/access_token")
			if !ok || !strings.HasPrefix(prefix, "/") || sec != prefix+"/shop/secret" {
				t.Errorf("TokenName %s, SecretName %s: want {prefix}/shop/access_token and {prefix}/shop/secret", tok, sec)
			}
			for _, c := range []struct{ key, leaf string }{
				{"shop#jsapi", "/shop/jsapi_ticket"}, {"shop#wx_card", "/shop/wx_card_ticket"}, {"shop#agent_config", "/shop/agent_config_ticket"},
			} {
				if got := s.TokenName(c.key); got != prefix+c.leaf {
					t.Errorf("TokenName(%s) = %s, want %s", c.key, got, prefix+c.leaf)
				}
			}
		}},
		{"a credential's meta is a parameter of its own beside it", func(t *testing.T, ctx context.Context, s Subject) {
			if got, want := s.MetaName("shop#jsapi"), s.TokenName("shop#jsapi")+"_meta"; got != want {
				t.Errorf("MetaName = %s, want %s", got, want)
			}
			if _, err := s.GetMeta(ctx, "shop"); !errors.Is(err, tokenstore.ErrNotFound) {
				t.Errorf("GetMeta before any PutMeta: %v, want ErrNotFound", err)
			}
			put(t, ctx, s, "shop", token(1))
			exp := time.Date(2026, 12, 1, 21, 47, 0, 0, time.UTC)
			for i, m := range []rotation.Meta{
				{Version: 1, ExpiresAt: exp, RotatesAt: exp.Add(-20 * time.Minute)},
				{Version: 1, ExpiresAt: exp.Add(time.Hour), RotatesAt: exp.Add(40 * time.Minute)},
			} {
				if err := s.PutMeta(ctx, "shop", m); err != nil {
					t.Fatalf("PutMeta #%d: %v", i+1, err)
				}
				if got, err := s.GetMeta(ctx, "shop"); err != nil || got != m {
					t.Errorf("GetMeta after PutMeta #%d = %+v, %v; want %+v", i+1, got, err, m)
				}
			}
			// The meta is not the credential, and leaves its versions alone.
			wantCurrent(t, ctx, s, "shop", token(1), 1)
			if _, err := s.GetMeta(ctx, "shop#jsapi"); !errors.Is(err, tokenstore.ErrNotFound) {
				t.Errorf("the ticket's meta before any: %v, want ErrNotFound", err)
			}
		}},
		{"a ticket is a parameter of its own beside the token", func(t *testing.T, ctx context.Context, s Subject) {
			put(t, ctx, s, "shop", token(1))
			if v := put(t, ctx, s, "shop#jsapi", token(2)); v != 1 {
				t.Errorf("the ticket's first version is %d, want 1", v)
			}
			if got, v, err := s.Get(ctx, "shop"); err != nil || got != token(1) || v != 1 {
				t.Errorf("the token after a ticket's Put: version %d, same token %v, %v", v, got == token(1), err)
			}
			if got, _, err := s.Get(ctx, "shop#jsapi"); err != nil || got != token(2) {
				t.Errorf("the ticket: same %v, %v", got == token(2), err)
			}
		}},
		{"versions start at 1 and go up by one per Put", func(t *testing.T, ctx context.Context, s Subject) {
			for i := 1; i <= 3; i++ {
				v := put(t, ctx, s, "shop", token(i))
				if v != int64(i) {
					t.Errorf("Put #%d returned version %d, want %d", i, v, i)
				}
				wantCurrent(t, ctx, s, "shop", token(i), int64(i))
			}
			// The same value again is a new version all the same.
			if v := put(t, ctx, s, "shop", token(3)); v != 4 {
				t.Errorf("Put of the same token returned version %d, want 4", v)
			}
			// Apps are independent.
			if v := put(t, ctx, s, "mp", token(9)); v != 1 {
				t.Errorf("first Put of another app returned version %d, want 1", v)
			}
		}},
		{"GetVersion reads old versions", func(t *testing.T, ctx context.Context, s Subject) {
			for i := 1; i <= 3; i++ {
				put(t, ctx, s, "shop", token(i))
			}
			for i := int64(1); i <= 3; i++ {
				if got, err := s.GetVersion(ctx, "shop", i); err != nil || got != token(int(i)) {
					t.Errorf("GetVersion(%d): right token %v (error %v)", i, got == token(int(i)), err)
				}
			}
		}},
		{"not found", func(t *testing.T, ctx context.Context, s Subject) {
			put(t, ctx, s, "shop", token(1))
			s.PutSecret("other", "secret-of-other")
			tests := []struct {
				name  string
				call  func() error
				param string
			}{
				{"Get of a missing parameter", func() error { _, _, err := s.Get(ctx, "nobody"); return err }, s.TokenName("nobody")},
				{"Version of a missing parameter", func() error { _, err := s.Version(ctx, "nobody"); return err }, s.TokenName("nobody")},
				{"GetVersion of a missing parameter", func() error { _, err := s.GetVersion(ctx, "nobody", 1); return err }, s.TokenName("nobody")},
				{"GetVersion of a missing version", func() error { _, err := s.GetVersion(ctx, "shop", 2); return err }, s.TokenName("shop")},
				{"GetVersion of version 0", func() error { _, err := s.GetVersion(ctx, "shop", 0); return err }, s.TokenName("shop")},
				{"Secret of an app with a token only", func() error { _, _, err := s.Secret(ctx, "shop"); return err }, s.SecretName("shop")},
				{"SecretVersion of an app with a token only", func() error { _, err := s.SecretVersion(ctx, "shop"); return err }, s.SecretName("shop")},
				{"Get of an app with a secret only", func() error { _, _, err := s.Get(ctx, "other"); return err }, s.TokenName("other")},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					err := tt.call()
					if !errors.Is(err, tokenstore.ErrNotFound) || errors.Is(err, tokenstore.ErrUnavailable) {
						t.Fatalf("got %v, want tokenstore.ErrNotFound", err)
					}
					var nf *types.ParameterNotFound
					var vnf *types.ParameterVersionNotFound
					if !errors.As(err, &nf) && !errors.As(err, &vnf) {
						t.Errorf("%v does not carry the SDK's not-found error", err)
					}
					if !strings.Contains(err.Error(), tt.param) || strings.Contains(err.Error(), token(1)) || strings.Contains(err.Error(), "secret-of-other") {
						t.Errorf("%v: want the parameter name %s in the error, and no value", err, tt.param)
					}
				})
			}
		}},
		{"Secret returns the value and version; an overwrite is a new version", func(t *testing.T, ctx context.Context, s Subject) {
			if v := s.PutSecret("shop", "secret-1"); v != 1 {
				t.Errorf("first PutSecret: version %d, want 1", v)
			}
			wantSecret(t, ctx, s, "shop", "secret-1", 1)
			if v := s.PutSecret("shop", "secret-2"); v != 2 {
				t.Errorf("second PutSecret: version %d, want 2", v)
			}
			wantSecret(t, ctx, s, "shop", "secret-2", 2)
			// The token's versions are the token parameter's own.
			if v := put(t, ctx, s, "shop", token(1)); v != 1 {
				t.Errorf("first Put after two secrets: version %d, want 1", v)
			}
			wantSecret(t, ctx, s, "shop", "secret-2", 2)
		}},
		{"an empty token is refused", func(t *testing.T, ctx context.Context, s Subject) {
			if _, err := s.Put(ctx, "shop", ""); err == nil || errors.Is(err, tokenstore.ErrNotFound) {
				t.Errorf("Put of an empty token: %v, want a validation error", err)
			}
			if _, err := s.Version(ctx, "shop"); !errors.Is(err, tokenstore.ErrNotFound) {
				t.Errorf("Version after the refused Put: %v, want ErrNotFound", err)
			}
			put(t, ctx, s, "shop", token(1))
			if _, err := s.Put(ctx, "shop", ""); err == nil {
				t.Errorf("Put of an empty token over a token succeeded")
			}
			wantCurrent(t, ctx, s, "shop", token(1), 1)
		}},
		{fmt.Sprintf("the last %d versions are kept", MaxVersions), func(t *testing.T, ctx context.Context, s Subject) {
			// The expectations follow the versions Put returned rather than
			// the number of Puts: over a hundred calls, moto now and then
			// loses an answer after the write and the SDK's retry writes
			// again (an extra version holding the same token), which real
			// SSM may do as well.
			var last int64
			for i := 1; i <= MaxVersions+1; i++ {
				last = put(t, ctx, s, "shop", token(i))
			}
			if last < MaxVersions+1 {
				t.Fatalf("%d Puts ended at version %d", MaxVersions+1, last)
			}
			wantCurrent(t, ctx, s, "shop", token(MaxVersions+1), last)
			oldest := last - MaxVersions + 1
			if _, err := s.GetVersion(ctx, "shop", oldest-1); !errors.Is(err, tokenstore.ErrNotFound) {
				t.Errorf("GetVersion(%d) at version %d: %v, want ErrNotFound", oldest-1, last, err)
			}
			if got, err := s.GetVersion(ctx, "shop", oldest); err != nil || !strings.HasPrefix(got, "token-") {
				t.Errorf("GetVersion(%d) at version %d: a token %v (error %v), want the oldest kept token", oldest, last, strings.HasPrefix(got, "token-"), err)
			}
		}},
		{"a done context reads and writes nothing", func(t *testing.T, ctx context.Context, s Subject) {
			done, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := s.Put(done, "shop", token(1)); !errors.Is(err, context.Canceled) || errors.Is(err, tokenstore.ErrUnavailable) {
				t.Errorf("Put on a canceled context: %v, want context.Canceled (not ErrUnavailable)", err)
			}
			if _, err := s.Version(ctx, "shop"); !errors.Is(err, tokenstore.ErrNotFound) {
				t.Errorf("Version after a canceled Put: %v, want ErrNotFound", err)
			}
		}},
	}
}

func put(t *testing.T, ctx context.Context, s Subject, app, tok string) int64 {
	t.Helper()
	v, err := s.Put(ctx, app, tok)
	if err != nil {
		t.Fatalf("Put %s: %v", app, err)
	}
	return v
}

// wantCurrent checks the app's current token through Get and Version.
func wantCurrent(t *testing.T, ctx context.Context, s Subject, app, tok string, version int64) {
	t.Helper()
	got, v, err := s.Get(ctx, app)
	if err != nil || got != tok || v != version {
		t.Errorf("Get %s: right token %v, version %d (error %v); want version %d", app, got == tok, v, err, version)
	}
	if v, err := s.Version(ctx, app); err != nil || v != version {
		t.Errorf("Version %s = %d (error %v), want %d", app, v, err, version)
	}
}

// wantSecret checks the app's secret through Secret and SecretVersion.
func wantSecret(t *testing.T, ctx context.Context, s Subject, app, secret string, version int64) {
	t.Helper()
	got, v, err := s.Secret(ctx, app)
	if err != nil || got != secret || v != version {
		t.Errorf("Secret %s: right secret %v, version %d (error %v); want version %d", app, got == secret, v, err, version)
	}
	if v, err := s.SecretVersion(ctx, app); err != nil || v != version {
		t.Errorf("SecretVersion %s = %d (error %v), want %d", app, v, err, version)
	}
}
