// Package tokenstoretest provides Fake, an in-memory stand-in for
// *tokenstore.Store with SSM Parameter Store's versioning, and Contract, the
// suite that holds both to the same semantics. It is test support: import it
// from tests only, never from product code.
//
// Like SSM (and moto), a parameter's versions start at 1 and go up by one
// with every write; SSM keeps the last MaxVersions of them, and so does the
// fake: writing version 101 deletes version 1. Values are kept as given (no
// encryption), and an empty value is refused, as SSM refuses it.
package tokenstoretest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/testsupport/faulthook"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
)

// MaxVersions is how many versions of a parameter SSM keeps: writing one
// more deletes the oldest (unless it carries a label, which wxtoken never
// sets).
const MaxVersions = 100

// Op names a method of the store, for Fault and Calls.
type Op string

// The operations of a token store; each is one SSM call.
const (
	OpPut           Op = "Put"
	OpGet           Op = "Get"
	OpGetVersion    Op = "GetVersion"
	OpVersion       Op = "Version"
	OpSecret        Op = "Secret"
	OpSecretVersion Op = "SecretVersion"
	OpPutMeta       Op = "PutMeta"
	OpGetMeta       Op = "GetMeta"
)

// Fault is what a Fake's fault hook wants a call to do instead of answering
// normally (see faulthook.Fault): a zero Fault lets the call through; Err is
// returned wrapped with the parameter's name as the store wraps SDK errors;
// After performs the write first (SSM took it but its answer was lost).
type Fault = faulthook.Fault

// Throttled returns an error that errors.Is tokenstore.ErrUnavailable, as
// the store returns for SSM's throttling, 5xx answers and dropped
// connections; use it as a Fault's Err.
func Throttled() error {
	return fmt.Errorf("tokenstoretest: injected throttling: %w", tokenstore.ErrUnavailable)
}

// Fake is an in-memory token store with the method set and semantics of
// *tokenstore.Store, plus PutSecret and Delete to set up parameters the way
// an operator would. The zero value is not usable; call New. It is safe for
// concurrent use.
type Fake struct {
	prefix string

	hook   faulthook.Hook[Op]
	mu     sync.Mutex
	params map[string]*param
}

// param is one parameter's kept versions, oldest first, and its latest
// version number.
type param struct {
	latest   int64
	versions []version
}

type version struct {
	n     int64
	value string
}

// New returns an empty fake store for prefix, defaulted and trimmed as
// tokenstore.New does it.
func New(prefix string) *Fake {
	if prefix == "" {
		prefix = tokenstore.DefaultPrefix
	}
	return &Fake{prefix: strings.TrimRight(prefix, "/"), params: map[string]*param{}}
}

// SetFault installs fn (nil: none) as the fault hook. Every later call asks
// fn(op, app) what to do before it does anything; fn runs without the fake's
// lock held, so it may call the fake itself, for example to publish a rival
// token in the middle of a Put.
func (f *Fake) SetFault(fn func(op Op, app string) Fault) { f.hook.Set(fn) }

// Calls returns how many times op was called, whatever its outcome (faults
// and canceled contexts included); PutSecret and Delete are not counted.
func (f *Fake) Calls(op Op) int { return f.hook.Calls(op) }

// TokenName returns the parameter name of a credential by its key (an
// app's name for its token, "app#ticket" for a ticket), as the Store names
// it.
func (f *Fake) TokenName(key string) string {
	c := registry.ParseCredentialKey(key)
	return f.prefix + "/" + c.App + "/" + c.ParameterLeaf()
}

// MetaName returns the parameter name of a credential's rotation.Meta.
func (f *Fake) MetaName(key string) string { return rotation.Name(f.TokenName(key)) }

// SecretName returns the parameter name of an app's secret.
func (f *Fake) SecretName(app string) string { return f.prefix + "/" + app + "/secret" }

// PutSecret creates or overwrites the app's secret, as an operator does, and
// returns its new version. It panics on an empty secret, which SSM refuses.
func (f *Fake) PutSecret(app, secret string) int64 {
	v, err := f.put(f.SecretName(app), secret)
	if err != nil {
		panic(fmt.Sprintf("tokenstoretest: PutSecret %s: %v", app, err))
	}
	return v
}

// Delete deletes the parameter name and all its versions, as
// ssm:DeleteParameter does; writing it again starts at version 1. It reports
// whether the parameter existed.
func (f *Fake) Delete(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.params[name]
	delete(f.params, name)
	return ok
}

// begin counts the call and asks the fault hook; it returns the fault to
// apply, or an error that ends the call before the operation (a canceled
// context, or a fault without After).
func (f *Fake) begin(ctx context.Context, op Op, app string) (Fault, error) {
	return f.hook.Begin(ctx, op, app)
}

// Put publishes token as the app's current token and returns the new
// version. It returns an error for an empty token (SSM's validation error),
// or the fault hook's or the context's.
func (f *Fake) Put(ctx context.Context, app, token string) (int64, error) {
	name := f.TokenName(app)
	ft, err := f.begin(ctx, OpPut, app)
	if err != nil {
		return 0, fmt.Errorf("tokenstore: put %s: %w", name, err)
	}
	v, err := f.put(name, token)
	if err != nil {
		return 0, fmt.Errorf("tokenstore: put %s: %w", name, err)
	}
	if ft.Err != nil {
		return 0, fmt.Errorf("tokenstore: put %s: %w", name, ft.Err)
	}
	return v, nil
}

// PutMeta publishes the credential key's rotation.Meta beside it.
func (f *Fake) PutMeta(ctx context.Context, key string, m rotation.Meta) error {
	name := f.MetaName(key)
	ft, err := f.begin(ctx, OpPutMeta, key)
	if err != nil {
		return fmt.Errorf("tokenstore: put %s: %w", name, err)
	}
	if _, err := f.put(name, m.Encode()); err != nil {
		return fmt.Errorf("tokenstore: put %s: %w", name, err)
	}
	if ft.Err != nil {
		return fmt.Errorf("tokenstore: put %s: %w", name, ft.Err)
	}
	return nil
}

// GetMeta reads the credential key's rotation.Meta; an error wrapping
// tokenstore.ErrNotFound when none is published.
func (f *Fake) GetMeta(ctx context.Context, key string) (rotation.Meta, error) {
	name := f.MetaName(key)
	v, _, err := f.get(ctx, OpGetMeta, key, name, 0)
	if err != nil {
		return rotation.Meta{}, err
	}
	m, err := rotation.Decode(v)
	if err != nil {
		return rotation.Meta{}, fmt.Errorf("tokenstore: get %s: %w", name, err)
	}
	return m, nil
}

// errEmptyValue is SSM's answer to an empty value.
var errEmptyValue = errors.New("ValidationException: Value must have length greater than or equal to 1")

func (f *Fake) put(name, value string) (int64, error) {
	if value == "" {
		return 0, errEmptyValue
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.params[name]
	if p == nil {
		p = &param{}
		f.params[name] = p
	}
	p.latest++
	p.versions = append(p.versions, version{n: p.latest, value: value})
	if len(p.versions) > MaxVersions {
		p.versions = append([]version(nil), p.versions[len(p.versions)-MaxVersions:]...)
	}
	return p.latest, nil
}

// Get returns the app's current token and its version; an error wrapping
// tokenstore.ErrNotFound when there is none.
func (f *Fake) Get(ctx context.Context, app string) (string, int64, error) {
	return f.get(ctx, OpGet, app, f.TokenName(app), 0)
}

// GetVersion returns the token the app's parameter held at version; an error
// wrapping tokenstore.ErrNotFound when the parameter or that version does
// not exist (any longer).
func (f *Fake) GetVersion(ctx context.Context, app string, version int64) (string, error) {
	v, _, err := f.get(ctx, OpGetVersion, app, f.TokenName(app), version)
	return v, err
}

// Version returns the version of the app's current token; an error wrapping
// tokenstore.ErrNotFound when there is none.
func (f *Fake) Version(ctx context.Context, app string) (int64, error) {
	_, v, err := f.get(ctx, OpVersion, app, f.TokenName(app), 0)
	return v, err
}

// Secret returns the app's secret and the version of its parameter; an error
// wrapping tokenstore.ErrNotFound when there is none.
func (f *Fake) Secret(ctx context.Context, app string) (string, int64, error) {
	return f.get(ctx, OpSecret, app, f.SecretName(app), 0)
}

// SecretVersion returns the version of the app's secret parameter; an error
// wrapping tokenstore.ErrNotFound when there is none.
func (f *Fake) SecretVersion(ctx context.Context, app string) (int64, error) {
	_, v, err := f.get(ctx, OpSecretVersion, app, f.SecretName(app), 0)
	return v, err
}

// get reads name, or name:version when version is not 0, failing like the
// store: not-found errors wrap ErrNotFound and the SDK's error type.
func (f *Fake) get(ctx context.Context, op Op, app, name string, version int64) (string, int64, error) {
	ref := name
	if op == OpGetVersion {
		ref += ":" + strconv.FormatInt(version, 10)
	}
	ft, err := f.begin(ctx, op, app)
	if err != nil {
		return "", 0, fmt.Errorf("tokenstore: get %s: %w", ref, err)
	}
	value, n, err := f.lookup(name, op == OpGetVersion, version)
	if err != nil {
		return "", 0, fmt.Errorf("tokenstore: get %s: %w", ref, err)
	}
	if ft.Err != nil {
		return "", 0, fmt.Errorf("tokenstore: get %s: %w", ref, ft.Err)
	}
	return value, n, nil
}

func (f *Fake) lookup(name string, byVersion bool, n int64) (string, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.params[name]
	if p == nil || len(p.versions) == 0 {
		return "", 0, errors.Join(tokenstore.ErrNotFound, &types.ParameterNotFound{Message: aws.String("Parameter " + name + " not found.")})
	}
	if !byVersion {
		last := p.versions[len(p.versions)-1]
		return last.value, last.n, nil
	}
	for _, v := range p.versions {
		if v.n == n {
			return v.value, v.n, nil
		}
	}
	if n < 0 {
		// SSM reads "name:-1" as a label, which no version carries.
		return "", 0, errors.Join(tokenstore.ErrNotFound, &types.ParameterNotFound{Message: aws.String("Parameter " + name + " not found.")})
	}
	return "", 0, errors.Join(tokenstore.ErrNotFound, &types.ParameterVersionNotFound{
		Message: aws.String(fmt.Sprintf("Systems Manager could not find version %d of %s. Verify the version and try again.", n, name)),
	})
}
