package tokenstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// newStore returns an SSM client on moto and a fresh prefix whose parameters
// are deleted when the test ends.
func newStore(t *testing.T) (*ssm.Client, string) {
	t.Helper()
	client := ssm.NewFromConfig(awstest.Config(t, awstest.SSM))
	prefix := "/" + awstest.Name(t, "ts")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := client.GetParametersByPath(ctx, &ssm.GetParametersByPathInput{Path: aws.String(prefix), Recursive: aws.Bool(true)})
		if err != nil {
			return
		}
		for _, p := range out.Parameters {
			_, _ = client.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: p.Name})
		}
	})
	return client, prefix
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPut checks what a consumer relies on: the token is a SecureString
// encrypted with the configured KMS key (alias/aws/ssm by default), readable
// back with its Version, which goes up by one with every Put, and earlier
// versions stay readable for repairs.
func TestPut(t *testing.T) {
	tests := []struct {
		name  string
		keyID string
		want  string
	}{
		{"default key", "", tokenstore.DefaultKeyID},
		{"custom key", "alias/wxtoken-test", "alias/wxtoken-test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, prefix := newStore(t)
			ctx := ctxT(t)
			s := tokenstore.New(client, prefix, tt.keyID)
			tokens := []string{"first-token-" + strings.Repeat("a", 100), "second-token-" + strings.Repeat("b", 100)}
			for i, tok := range tokens {
				v, err := s.Put(ctx, "shop", tok)
				if err != nil {
					t.Fatalf("Put #%d: %v", i+1, err)
				}
				if v != int64(i+1) {
					t.Errorf("Put #%d returned Version %d, want %d", i+1, v, i+1)
				}
			}

			tok, v, err := s.Get(ctx, "shop")
			if err != nil || tok != tokens[1] || v != 2 {
				t.Errorf("Get = fp %s version %d (error %v), want fp %s version 2", wechat.Fingerprint(tok), v, err, wechat.Fingerprint(tokens[1]))
			}
			if v, err := s.Version(ctx, "shop"); err != nil || v != 2 {
				t.Errorf("Version = %d (error %v), want 2", v, err)
			}
			if old, err := s.GetVersion(ctx, "shop", 1); err != nil || old != tokens[0] {
				t.Errorf("GetVersion(1) = fp %s (error %v), want fp %s", wechat.Fingerprint(old), err, wechat.Fingerprint(tokens[0]))
			}

			// Without decryption SSM hands out no token.
			raw, err := client.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(s.TokenName("shop")), WithDecryption: aws.Bool(false)})
			if err != nil {
				t.Fatal(err)
			}
			if raw.Parameter.Type != ssmtypes.ParameterTypeSecureString || aws.ToString(raw.Parameter.Value) == tokens[1] {
				t.Errorf("undecrypted parameter: type %s, plain value returned: %v; want an encrypted SecureString",
					raw.Parameter.Type, aws.ToString(raw.Parameter.Value) == tokens[1])
			}
			desc, err := client.DescribeParameters(ctx, &ssm.DescribeParametersInput{ParameterFilters: []ssmtypes.ParameterStringFilter{
				{Key: aws.String("Name"), Option: aws.String("Equals"), Values: []string{s.TokenName("shop")}}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(desc.Parameters) != 1 {
				t.Fatalf("DescribeParameters found %d parameters named %s, want 1", len(desc.Parameters), s.TokenName("shop"))
			}
			if p := desc.Parameters[0]; aws.ToString(p.KeyId) != tt.want || p.Type != ssmtypes.ParameterTypeSecureString || p.Version != 2 {
				t.Errorf("parameter metadata: key %q, type %s, version %d; want key %q, SecureString, version 2", aws.ToString(p.KeyId), p.Type, p.Version, tt.want)
			}
		})
	}
}

// TestSecret reads an app secret an operator put as a SecureString.
func TestSecret(t *testing.T) {
	client, prefix := newStore(t)
	ctx := ctxT(t)
	s := tokenstore.New(client, prefix, "")
	secret := "operator-secret-0123456789abcdef"
	_, err := client.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(s.SecretName("shop")), Value: aws.String(secret),
		Type: ssmtypes.ParameterTypeSecureString})
	if err != nil {
		t.Fatal(err)
	}
	got, v, err := s.Secret(ctx, "shop")
	if err != nil || got != secret || v != 1 {
		t.Errorf("Secret: matches %v, version %d (error %v), want the operator's secret at version 1", got == secret, v, err)
	}
	// The operator replaces the secret: a new version, readable without decryption.
	if _, err := client.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(s.SecretName("shop")), Value: aws.String(secret + "-new"),
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.SecretVersion(ctx, "shop"); err != nil || v != 2 {
		t.Errorf("SecretVersion after a replacement = %d (error %v), want 2", v, err)
	}
}

// TestNotFound: a missing parameter or version is ErrNotFound, wrapped with
// the parameter's name and still carrying the SDK's error.
func TestNotFound(t *testing.T) {
	client, prefix := newStore(t)
	ctx := ctxT(t)
	s := tokenstore.New(client, prefix, "")
	tok := "only-token-" + strings.Repeat("c", 100)
	if _, err := s.Put(ctx, "shop", tok); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		call  func() error
		param string
	}{
		{"Get", func() error { _, _, err := s.Get(ctx, "nobody"); return err }, s.TokenName("nobody")},
		{"Version", func() error { _, err := s.Version(ctx, "nobody"); return err }, s.TokenName("nobody")},
		{"Secret", func() error { _, _, err := s.Secret(ctx, "shop"); return err }, s.SecretName("shop")},
		{"SecretVersion", func() error { _, err := s.SecretVersion(ctx, "shop"); return err }, s.SecretName("shop")},
		{"GetVersion of a missing parameter", func() error { _, err := s.GetVersion(ctx, "nobody", 1); return err }, s.TokenName("nobody")},
		{"GetVersion of a missing version", func() error { _, err := s.GetVersion(ctx, "shop", 7); return err }, s.TokenName("shop")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tokenstore.ErrNotFound) {
				t.Fatalf("got %v, want tokenstore.ErrNotFound", err)
			}
			var nf *ssmtypes.ParameterNotFound
			var vnf *ssmtypes.ParameterVersionNotFound
			if !errors.As(err, &nf) && !errors.As(err, &vnf) {
				t.Errorf("%v does not carry the SDK's not-found error", err)
			}
			if !strings.Contains(err.Error(), tt.param) || strings.Contains(err.Error(), tok) {
				t.Errorf("%v: want the parameter name %s in the error, and no token", err, tt.param)
			}
		})
	}
}

// TestNames checks the parameter layout and the defaults; it needs no SSM.
func TestNames(t *testing.T) {
	tests := []struct {
		prefix, token, secret string
	}{
		{"", "/wechat/shop/access_token", "/wechat/shop/secret"},
		{"/prod/wx/", "/prod/wx/shop/access_token", "/prod/wx/shop/secret"},
	}
	for _, tt := range tests {
		s := tokenstore.New(nil, tt.prefix, "")
		if got := s.TokenName("shop"); got != tt.token {
			t.Errorf("prefix %q: TokenName = %s, want %s", tt.prefix, got, tt.token)
		}
		if got := s.SecretName("shop"); got != tt.secret {
			t.Errorf("prefix %q: SecretName = %s, want %s", tt.prefix, got, tt.secret)
		}
	}
}

// TestContract runs the token store's contract against SSM (moto): the
// engine is what the fake in tokenstoretest is held to.
func TestContract(t *testing.T) {
	awstest.Config(t, awstest.SSM) // skip (or fail) before any subtest without the engine
	tokenstoretest.Contract(t, func(t *testing.T) tokenstoretest.Subject {
		client, prefix := newStore(t)
		return engineStore{Store: tokenstore.New(client, prefix, ""), t: t, client: client}
	})
}

// engineStore is a Store on SSM that can also write secrets as an operator
// does.
type engineStore struct {
	*tokenstore.Store
	t      *testing.T
	client *ssm.Client
}

func (s engineStore) PutSecret(app, secret string) int64 {
	s.t.Helper()
	out, err := s.client.PutParameter(ctxT(s.t), &ssm.PutParameterInput{Name: aws.String(s.SecretName(app)), Value: aws.String(secret),
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)})
	if err != nil {
		s.t.Fatalf("put the secret of %s: %v", app, err)
	}
	return out.Version
}
