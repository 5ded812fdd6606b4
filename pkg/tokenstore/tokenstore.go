// Package tokenstore publishes access tokens and tickets to SSM Parameter
// Store and reads them back: one SecureString per credential, at
// {prefix}/{app}/access_token for an app's token and {prefix}/{app}/
// jsapi_ticket, wx_card_ticket or agent_config_ticket for its tickets, whose
// value is the raw credential, so `aws ssm get-parameter --with-decryption`
// is all a consumer needs, and whose Version goes up with every new one.
// The methods that take a key take a registry.Credential key: the app's
// name for its token, "app#ticket" for a ticket.
//
// It also reads app secrets, which operators keep as SecureStrings at
// {prefix}/{app}/secret.
//
// Errors wrap the SDK's and name the parameter, never its value; ErrNotFound
// is returned (wrapped) when a parameter or version does not exist, and
// ErrUnavailable marks throttling and other errors a later attempt may not
// see.
package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/rotation"
)

// ErrNotFound means the parameter (or the requested version of it) does not
// exist.
var ErrNotFound = errors.New("tokenstore: parameter not found")

// DefaultPrefix is the parameter path prefix when none is configured.
const DefaultPrefix = "/wechat"

// DefaultKeyID is the KMS key SecureStrings are encrypted with by default.
const DefaultKeyID = "alias/aws/ssm"

// SSM is the subset of the SSM client the store calls.
type SSM interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
	PutParameter(ctx context.Context, in *ssm.PutParameterInput, optFns ...func(*ssm.Options)) (*ssm.PutParameterOutput, error)
}

// Store publishes and reads tokens under one prefix.
type Store struct {
	client SSM
	prefix string
	keyID  string
}

// New returns a store for the prefix (DefaultPrefix when empty; it must start
// with a slash) encrypting with keyID (DefaultKeyID when empty).
func New(client SSM, prefix, keyID string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if keyID == "" {
		keyID = DefaultKeyID
	}
	return &Store{client: client, prefix: strings.TrimRight(prefix, "/"), keyID: keyID}
}

// TokenName returns the parameter name of a credential by its key: an
// app's name for its token, "app#ticket" for a ticket.
func (s *Store) TokenName(key string) string {
	c := registry.ParseCredentialKey(key)
	return s.prefix + "/" + c.App + "/" + c.ParameterLeaf()
}

// SecretName returns the parameter name of an app's secret.
func (s *Store) SecretName(app string) string { return s.prefix + "/" + app + "/secret" }

// Put publishes token as the app's current token and returns the new Version.
func (s *Store) Put(ctx context.Context, app, token string) (int64, error) {
	name := s.TokenName(app)
	out, err := s.client.PutParameter(ctx, &ssm.PutParameterInput{
		Name:      aws.String(name),
		Value:     aws.String(token),
		Type:      types.ParameterTypeSecureString,
		KeyId:     aws.String(s.keyID),
		Overwrite: aws.Bool(true),
		Tier:      types.ParameterTierStandard,
	})
	if err != nil {
		return 0, fmt.Errorf("tokenstore: put %s: %w", name, translate(err))
	}
	return out.Version, nil
}

// MetaName returns the parameter name of a credential's rotation.Meta, the
// non-secret sibling of TokenName(key).
func (s *Store) MetaName(key string) string { return rotation.Name(s.TokenName(key)) }

// PutMeta publishes m, what consumers need to schedule their reads of the
// credential key, as a String parameter beside it (not secret: no KMS call
// to write or read it).
func (s *Store) PutMeta(ctx context.Context, key string, m rotation.Meta) error {
	name := s.MetaName(key)
	if _, err := s.client.PutParameter(ctx, &ssm.PutParameterInput{
		Name:      aws.String(name),
		Value:     aws.String(m.Encode()),
		Type:      types.ParameterTypeString,
		Overwrite: aws.Bool(true),
		Tier:      types.ParameterTierStandard,
	}); err != nil {
		return fmt.Errorf("tokenstore: put %s: %w", name, translate(err))
	}
	return nil
}

// GetMeta reads the credential key's rotation.Meta; an error wrapping
// ErrNotFound when none is published.
func (s *Store) GetMeta(ctx context.Context, key string) (rotation.Meta, error) {
	name := s.MetaName(key)
	v, _, err := s.get(ctx, name, false)
	if err != nil {
		return rotation.Meta{}, err
	}
	m, err := rotation.Decode(v)
	if err != nil {
		return rotation.Meta{}, fmt.Errorf("tokenstore: get %s: %w", name, err)
	}
	return m, nil
}

// Get returns the app's current token and its Version.
func (s *Store) Get(ctx context.Context, app string) (string, int64, error) {
	return s.get(ctx, s.TokenName(app), true)
}

// GetVersion returns the token the app's parameter held at version, for
// repairing a parameter overwritten out of order.
func (s *Store) GetVersion(ctx context.Context, app string, version int64) (string, error) {
	v, _, err := s.get(ctx, s.TokenName(app)+":"+strconv.FormatInt(version, 10), true)
	return v, err
}

// Version returns the Version of the app's current token without decrypting
// it, for cheap consistency checks.
func (s *Store) Version(ctx context.Context, app string) (int64, error) {
	_, v, err := s.get(ctx, s.TokenName(app), false)
	return v, err
}

// Secret returns the app's secret and the Version of its parameter (a new
// version means the operator replaced the secret).
func (s *Store) Secret(ctx context.Context, app string) (string, int64, error) {
	return s.get(ctx, s.SecretName(app), true)
}

// SecretVersion returns the Version of the app's secret parameter without
// decrypting it.
func (s *Store) SecretVersion(ctx context.Context, app string) (int64, error) {
	_, v, err := s.get(ctx, s.SecretName(app), false)
	return v, err
}

func (s *Store) get(ctx context.Context, name string, decrypt bool) (string, int64, error) {
	out, err := s.client.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(decrypt)})
	if err != nil {
		return "", 0, fmt.Errorf("tokenstore: get %s: %w", name, translate(err))
	}
	if out.Parameter == nil {
		return "", 0, fmt.Errorf("tokenstore: get %s: empty answer", name)
	}
	return aws.ToString(out.Parameter.Value), out.Parameter.Version, nil
}

// translate maps the SDK's not-found errors to ErrNotFound, keeping the
// original for errors.As.
func translate(err error) error {
	var nf *types.ParameterNotFound
	var vnf *types.ParameterVersionNotFound
	if errors.As(err, &nf) || errors.As(err, &vnf) {
		return errors.Join(ErrNotFound, err)
	}
	return unavailable(err)
}
