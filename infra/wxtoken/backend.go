package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
)

// DynamoDB is what the command needs of DynamoDB.
type DynamoDB interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// SSM is what the command needs of SSM Parameter Store.
type SSM interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
	PutParameter(ctx context.Context, in *ssm.PutParameterInput, optFns ...func(*ssm.Options)) (*ssm.PutParameterOutput, error)
	DeleteParameter(ctx context.Context, in *ssm.DeleteParameterInput, optFns ...func(*ssm.Options)) (*ssm.DeleteParameterOutput, error)
}

// operatorLease is how long the command holds an app's lease to change its
// state (unblock, remove): far longer than the few writes it makes, far
// shorter than the refresher's 60 s lease.
const operatorLease = 30 * time.Second

// backend is the deployment's table, parameters and API as the command
// reaches them. Its methods are the command's only I/O with AWS.
type backend struct {
	t      target
	db     DynamoDB
	ssm    SSM
	reg    *registry.Registry
	leases *lease.Table
	store  *tokenstore.Store
	api    *apiClient
	// ips finds the IP of a whitelist refusal in the functions' logs (nil:
	// nowhere to look).
	ips ipFinder
	// owner identifies the command in leases it takes.
	owner string
	now   func() time.Time
}

func newBackend(t target, db DynamoDB, ps SSM, api *apiClient, now func() time.Time) *backend {
	return &backend{
		t: t, db: db, ssm: ps,
		reg: registry.New(db, t.Table), leases: lease.New(db, t.Table),
		store: tokenstore.New(ps, t.Prefix, ""), api: api, owner: operatorID(), now: now,
	}
}

// operatorID names this command in leases: who, where, which process.
func operatorID() string {
	who := "operator"
	if u, err := user.Current(); err == nil && u.Username != "" {
		who = u.Username
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("wxtoken-cli:%s@%s:%d", who, host, os.Getpid())
}

func appKey(name string) map[string]ddbtypes.AttributeValue {
	return map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "app#" + name}}
}

// stateKey is the key of an app's state item (pkg/lease's schema).
func stateKey(name string) map[string]ddbtypes.AttributeValue {
	return map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "state#" + name}}
}

func notRegistered(name string, t target) error {
	return fail(ExitNotFound, "no app %q is registered in %s (`wxtoken apps list` shows the apps)", name, t)
}

// registered is item for an app that must exist: a missing one is a
// not-found error naming where it looked.
func (b *backend) registered(ctx context.Context, name string) (map[string]ddbtypes.AttributeValue, error) {
	item, err := b.item(ctx, name)
	if err == nil && item == nil {
		err = notRegistered(name, b.t)
	}
	return item, err
}

// item returns the registration item of name (nil when there is none).
func (b *backend) item(ctx context.Context, name string) (map[string]ddbtypes.AttributeValue, error) {
	out, err := b.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(b.t.Table), Key: appKey(name), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, wrap(ExitFailed, err, "read the registration of %s from table %s", name, b.t.Table)
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	return out.Item, nil
}

// register writes a new registration, refusing to replace one.
func (b *backend) register(ctx context.Context, item map[string]ddbtypes.AttributeValue, name string) error {
	_, err := b.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(b.t.Table), Item: item,
		ConditionExpression: aws.String("attribute_not_exists(pk)")})
	var ccf *ddbtypes.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return fail(ExitInvalid, "an app named %s is already registered: choose another name, or change it with `wxtoken apps set %s`", name, name)
	}
	if err != nil {
		return wrap(ExitFailed, err, "register %s in table %s", name, b.t.Table)
	}
	return nil
}

// replace overwrites an existing registration.
func (b *backend) replace(ctx context.Context, item map[string]ddbtypes.AttributeValue, name string) error {
	_, err := b.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(b.t.Table), Item: item,
		ConditionExpression: aws.String("attribute_exists(pk)")})
	var ccf *ddbtypes.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return notRegistered(name, b.t)
	}
	if err != nil {
		return wrap(ExitFailed, err, "update the registration of %s", name)
	}
	return nil
}

// deregister deletes a registration.
func (b *backend) deregister(ctx context.Context, name string) error {
	if _, err := b.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(b.t.Table), Key: appKey(name)}); err != nil {
		return wrap(ExitFailed, err, "delete the registration of %s", name)
	}
	return nil
}

// apps lists every registration: the usable ones, and the invalid ones as
// *registry.InvalidError (malformed items, and accounts registered twice,
// as the scheduled run sees them).
func (b *backend) apps(ctx context.Context) ([]registry.App, []error, error) {
	apps, bad, err := b.reg.List(ctx)
	if err != nil {
		return nil, nil, wrap(ExitFailed, err, "list the apps of table %s", b.t.Table)
	}
	apps, dups := registry.Duplicates(apps)
	return apps, append(bad, dups...), nil
}

// states returns every app's state by name.
func (b *backend) states(ctx context.Context) (map[string]lease.State, error) {
	list, err := b.leases.List(ctx)
	if err != nil {
		return nil, wrap(ExitFailed, err, "read the apps' state from table %s", b.t.Table)
	}
	m := make(map[string]lease.State, len(list))
	for _, st := range list {
		m[st.App] = st
	}
	return m, nil
}

// state returns one app's state.
func (b *backend) state(ctx context.Context, name string) (lease.State, error) {
	st, err := b.leases.Get(ctx, name)
	if err != nil {
		return lease.State{}, wrap(ExitFailed, err, "read the state of %s", name)
	}
	return st, nil
}

// putSecret stores an app's secret as a SecureString (a new version when
// one exists) and returns its version. The value never appears in an error.
func (b *backend) putSecret(ctx context.Context, name, secret string) (int64, error) {
	in := &ssm.PutParameterInput{
		Name: aws.String(b.store.SecretName(name)), Value: aws.String(secret),
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true), Tier: ssmtypes.ParameterTierStandard,
		Description: aws.String("wxtoken: AppSecret of app " + name),
	}
	if b.t.KMSKeyID != "" {
		in.KeyId = aws.String(b.t.KMSKeyID)
	}
	out, err := b.ssm.PutParameter(ctx, in)
	if err != nil {
		return 0, wrap(ExitFailed, err, "store the secret of %s at %s (your credentials need ssm:PutParameter there, and kms:Encrypt on the stack's key if it has one)", name, b.store.SecretName(name))
	}
	return out.Version, nil
}

// secretVersion returns the version of an app's secret (0: none stored).
func (b *backend) secretVersion(ctx context.Context, name string) (int64, error) {
	v, err := b.store.SecretVersion(ctx, name)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, wrap(ExitFailed, err, "read the secret's version of %s", name)
	}
	return v, nil
}

// secret returns an app's stored secret, for the one call the command
// makes to WeChat itself (clear-quota). It is never printed.
func (b *backend) secret(ctx context.Context, name string) (string, error) {
	secret, _, err := b.store.Secret(ctx, name)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return "", fail(ExitNotFound, "no secret is stored for %s at %s: store it with `wxtoken apps secret %s`", name, b.store.SecretName(name), name)
	}
	if err != nil {
		return "", wrap(ExitFailed, err, "read the secret of %s (your credentials need ssm:GetParameter on it and kms:Decrypt on its key)", name)
	}
	return secret, nil
}

// tokenVersion returns the version of an app's published token (0: none).
func (b *backend) tokenVersion(ctx context.Context, name string) (int64, error) {
	v, err := b.store.Version(ctx, name)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, wrap(ExitFailed, err, "read the token's version of %s", name)
	}
	return v, nil
}

// token returns an app's published token and its version.
func (b *backend) token(ctx context.Context, name string) (string, int64, error) {
	tok, v, err := b.store.Get(ctx, name)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return "", 0, fail(ExitNotFound, "no token is published for %s (yet): `wxtoken apps show %s` says why", name, name)
	}
	if err != nil {
		return "", 0, wrap(ExitFailed, err, "read the token of %s (your credentials need ssm:GetParameter on it and kms:Decrypt on its key)", name)
	}
	return tok, v, nil
}

// deleteParameter deletes a parameter; a missing one is no error. It
// reports whether one was deleted.
func (b *backend) deleteParameter(ctx context.Context, name string) (bool, error) {
	_, err := b.ssm.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(name)})
	var nf *ssmtypes.ParameterNotFound
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, wrap(ExitFailed, err, "delete %s", name)
	}
	return true, nil
}

// hold takes an app's lease for the command, so that no refresh runs while
// it changes the app's state; ErrHeld becomes advice to retry.
func (b *backend) hold(ctx context.Context, name string) error {
	now := b.now()
	_, err := b.leases.Acquire(ctx, name, b.owner, now, now.Add(operatorLease))
	if errors.Is(err, lease.ErrHeld) {
		return fail(ExitFailed, "a refresh of %s is in progress right now: run the command again in a minute", name)
	}
	if err != nil {
		return wrap(ExitFailed, err, "take the lease of %s", name)
	}
	return nil
}

// clearBlocks ends every pause of an app, under the command's lease.
func (b *backend) clearBlocks(ctx context.Context, name string) error {
	if err := b.hold(ctx, name); err != nil {
		return err
	}
	if err := b.leases.Release(ctx, name, b.owner, b.now(), lease.Fields{ClearBlocks: true}); err != nil {
		return wrap(ExitFailed, err, "clear the pause of %s (the command's lease ran out: run it again)", name)
	}
	return nil
}

// deleteState deletes an app's state item, which the command must hold the
// lease of (a refresh that started before cannot write after this).
func (b *backend) deleteState(ctx context.Context, name string) error {
	_, err := b.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(b.t.Table), Key: stateKey(name),
		ConditionExpression:       aws.String("#lo = :me"),
		ExpressionAttributeNames:  map[string]string{"#lo": "lease_owner"},
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":me": &ddbtypes.AttributeValueMemberS{Value: b.owner}},
	})
	var ccf *ddbtypes.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return fail(ExitFailed, "the state of %s was not deleted: the command's lease ran out; run `wxtoken apps remove %s` again", name, name)
	}
	if err != nil {
		return wrap(ExitFailed, err, "delete the state of %s", name)
	}
	return nil
}

// newHTTPClient is the client for API calls: a refresh may wait for
// WeChat (the API function's timeout is 25 s).
func newHTTPClient() *http.Client { return &http.Client{Timeout: 40 * time.Second} }
