// Package lease keeps each app's refresh lease and token metadata in one
// DynamoDB item, "state#{app}", of wxtoken's table.
//
// The lease (lease_owner, lease_until) is taken with a conditional write
// that succeeds only when no unexpired lease exists; expiry is always
// checked in code against the caller's clock, never left to DynamoDB's TTL.
// The generation counts committed tokens and changes only through Commit,
// whose condition requires the caller to still hold an unexpired lease and
// to have seen the current generation: a holder that stalled past its lease
// is fenced off and cannot commit, and so cannot publish.
//
// Item schema (attribute: type, meaning); times are Unix milliseconds:
//
//	pk                S  "state#" + app name
//	generation        N  committed tokens so far (monotonic)
//	version           N  SSM Version holding the committed token (0: publish pending)
//	fingerprint       S  short hash of the committed token (never the token)
//	mode              S  credential API of the committed token: stable, classic, wecom
//	appid             S  account (appid or corpid) the committed token belongs to
//	kind              S  kind of that account: offiaccount, miniprogram, wecom
//	pending           S  the committed token while it is not yet in SSM (version 0),
//	                     sealed by the caller (never a plain token); removed by Confirm
//	fetched_at        N  when the request that obtained it was sent
//	expires_at        N  fetched_at + expires_in
//	lease_owner       S  owner id of the current lease holder
//	lease_until       N  lease expiry
//	last_error        S  last refresh error (no secrets, no tokens)
//	last_errcode      N  WeChat errcode of the last error, if any
//	last_error_class  S  wechat.Class of the last error
//	last_error_at     N  when it happened
//	blocked_until     N  no normal-mode WeChat call before this (quota, config error)
//	force_blocked_until N no forced call (stable force_refresh) before this
//	blocked_secret_version N version of the secret whose use caused a config block;
//	                     a newer secret ends the block
//	calls_day         S  Beijing date calls_today counts
//	calls_today       N  WeChat credential calls made by wxtoken that day
//	last_on_demand_at N  last on-demand refresh that called WeChat
//	verified_fp       S  fingerprint a caller claimed invalid and WeChat accepted
//	verified_at       N  when that check was made
//	drift_count       N  tokens found rotated behind wxtoken's back
//	last_drift_at     N  when the last one was found
//	superseded_at     N  a credential call that ends the published token (classic,
//	                     forced stable) may have issued a token that was lost: the
//	                     app is due until a token fetched after this is committed
//	updated_at        N  last write
//	ttl               N  Unix seconds; set only when the app is deregistered,
//	                     so DynamoDB cleans the item up (cleanup only);
//	                     Acquire removes it (the app is registered again)
//
// Errors wrap the SDK's; ErrHeld and ErrFenced are returned (wrapped) when a
// condition fails, and ErrUnavailable marks throttling and other errors a
// later attempt may not see.
package lease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrHeld means another owner holds an unexpired lease.
var ErrHeld = errors.New("lease: held by another owner")

// ErrFenced means the caller no longer holds the lease, or the generation
// moved on: its write was refused.
var ErrFenced = errors.New("lease: fenced: lease lost or generation changed")

// DynamoDB is the subset of the DynamoDB client the table calls.
type DynamoDB interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// State is an app's lease and token metadata.
type State struct {
	App         string
	Generation  int64
	Version     int64
	Fingerprint string
	Mode        string
	AppID       string
	Kind        string
	// Pending is the committed token, sealed by the refresher, while it is
	// not yet published (Version 0).
	Pending        string
	FetchedAt      time.Time
	ExpiresAt      time.Time
	LeaseOwner     string
	LeaseUntil     time.Time
	LastError      string
	LastErrCode    int
	LastErrorClass string
	LastErrorAt    time.Time
	BlockedUntil   time.Time
	// ForceBlockedUntil pauses forced calls only (the force_refresh limit).
	ForceBlockedUntil time.Time
	// BlockedSecretVersion is the SSM version of the secret in use when a
	// configuration error paused calls (0: not such a pause).
	BlockedSecretVersion int64
	CallsDay             string
	CallsToday           int
	LastOnDemandAt       time.Time
	VerifiedFP           string
	VerifiedAt           time.Time
	DriftCount           int
	LastDriftAt          time.Time
	// SupersededAt: a call that may have ended the published token issued
	// a token that was lost (the app is due until a newer fetch commits).
	SupersededAt time.Time
	UpdatedAt    time.Time
	// CleanupAt is when DynamoDB's TTL may delete the item (zero: never).
	CleanupAt time.Time
}

// HasToken reports whether a token was ever committed.
func (s State) HasToken() bool { return s.Generation > 0 }

// Leased reports whether an unexpired lease exists at now.
func (s State) Leased(now time.Time) bool { return s.LeaseOwner != "" && now.Before(s.LeaseUntil) }

// Table is the state items of one DynamoDB table.
type Table struct {
	client DynamoDB
	name   string
}

// New returns the state items of table name.
func New(client DynamoDB, name string) *Table { return &Table{client: client, name: name} }

func key(app string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "state#" + app}}
}

// Get reads an app's state with a consistent read; an app never refreshed has
// the zero State (with App set).
func (t *Table) Get(ctx context.Context, app string) (State, error) {
	out, err := t.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(t.name), Key: key(app), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return State{}, fmt.Errorf("lease: get %s: %w", app, unavailable(err))
	}
	st := decode(out.Item)
	st.App = app
	return st, nil
}

// Acquire takes the app's lease for owner until until, if no unexpired lease
// exists at now. It returns the state as of the attempt: after the write on
// success, the holder's on ErrHeld.
func (t *Table) Acquire(ctx context.Context, app, owner string, now, until time.Time) (State, error) {
	u := newUpdate()
	u.set("lease_owner", str(owner))
	u.set("lease_until", ms(until))
	u.set("updated_at", ms(now))
	// Only a registered app is refreshed: one removed and registered again
	// must not keep the TTL that Expire set, or DynamoDB deletes its state.
	u.remove("ttl")
	u.values[":now"] = ms(now)
	u.names["#lu"] = "lease_until"
	in := u.input(t.name, app, "attribute_not_exists(#lu) OR #lu <= :now")
	in.ReturnValues = types.ReturnValueAllNew
	out, err := t.client.UpdateItem(ctx, in)
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			st := decode(ccf.Item)
			st.App = app
			if st.LeaseOwner == "" {
				// DynamoDB Local may not return the item: read it.
				if got, gerr := t.Get(ctx, app); gerr == nil {
					st = got
				}
			}
			return st, fmt.Errorf("lease: acquire %s: %w (owner %s until %s)", app, ErrHeld, st.LeaseOwner, st.LeaseUntil.UTC().Format(time.RFC3339Nano))
		}
		return State{}, fmt.Errorf("lease: acquire %s: %w", app, unavailable(err))
	}
	st := decode(out.Attributes)
	st.App = app
	return st, nil
}

// Commit records a new token as generation fromGen+1, with version 0 until
// Confirm: the write that fences. It succeeds only while owner holds an
// unexpired lease at now and the generation is still fromGen; otherwise it
// returns ErrFenced.
func (t *Table) Commit(ctx context.Context, app, owner string, fromGen int64, now time.Time, c Commit) error {
	u := newUpdate()
	u.set("generation", num(fromGen+1))
	u.set("version", num(0))
	u.set("fingerprint", str(c.Fingerprint))
	u.set("mode", str(c.Mode))
	if c.AppID != "" {
		u.set("appid", str(c.AppID))
	}
	if c.Kind != "" {
		u.set("kind", str(c.Kind))
	}
	if c.Pending != "" {
		u.set("pending", str(c.Pending))
	} else {
		u.remove("pending")
	}
	u.set("fetched_at", ms(c.FetchedAt))
	u.set("expires_at", ms(c.ExpiresAt))
	u.set("updated_at", ms(now))
	c.Fields.apply(u)
	cond := "#lo = :owner AND #lu > :now AND "
	if fromGen == 0 {
		cond += "attribute_not_exists(#gen)"
	} else {
		cond += "#gen = :gen"
		u.values[":gen"] = num(fromGen)
	}
	u.names["#lo"], u.names["#lu"], u.names["#gen"] = "lease_owner", "lease_until", "generation"
	u.values[":owner"], u.values[":now"] = str(owner), ms(now)
	if _, err := t.client.UpdateItem(ctx, u.input(t.name, app, cond)); err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return fmt.Errorf("lease: commit %s generation %d: %w", app, fromGen+1, ErrFenced)
		}
		return fmt.Errorf("lease: commit %s generation %d: %w", app, fromGen+1, unavailable(err))
	}
	return nil
}

// Commit is what Commit records about a new token.
type Commit struct {
	Fingerprint string
	Mode        string
	// AppID and Kind name the account the token belongs to.
	AppID string
	Kind  string
	// Pending, when set, is the sealed token, kept until Confirm records
	// that SSM holds it.
	Pending   string
	FetchedAt time.Time
	ExpiresAt time.Time
	// Fields are recorded in the same write.
	Fields Fields
}

// Confirm records the SSM version that holds generation gen's token, if the
// generation is still gen (ErrFenced otherwise), and drops the sealed copy.
func (t *Table) Confirm(ctx context.Context, app string, gen, version int64, now time.Time) error {
	u := newUpdate()
	u.set("version", num(version))
	u.set("updated_at", ms(now))
	u.remove("pending")
	u.names["#gen"] = "generation"
	u.values[":gen"] = num(gen)
	if _, err := t.client.UpdateItem(ctx, u.input(t.name, app, "#gen = :gen")); err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return fmt.Errorf("lease: confirm %s generation %d: %w", app, gen, ErrFenced)
		}
		return fmt.Errorf("lease: confirm %s generation %d: %w", app, gen, unavailable(err))
	}
	return nil
}

// Fields are optional metadata written with Commit or Release; nil pointers
// and zero times are left unchanged.
type Fields struct {
	LastError      *string
	LastErrCode    *int
	LastErrorClass *string
	LastErrorAt    time.Time
	ClearError     bool // remove last_error* (after a success)
	// ClearBlocks removes every pause (blocked_until, force_blocked_until,
	// blocked_secret_version): a success ends them all.
	ClearBlocks          bool
	BlockedUntil         *time.Time
	ForceBlockedUntil    *time.Time
	BlockedSecretVersion *int64
	CallsDay             *string
	CallsToday           *int
	LastOnDemandAt       time.Time
	VerifiedFP           *string
	VerifiedAt           time.Time
	DriftCount           *int
	LastDriftAt          time.Time
	SupersededAt         time.Time
}

// Attributes calls set for every attribute f writes (an int64 for numbers,
// times as Unix milliseconds, or a string) and remove for every group it
// removes, in the order an update applies them. It is the one mapping of
// Fields to the item's attributes, shared with the in-memory fake.
func (f Fields) Attributes(set func(attr string, v any), remove func(attrs ...string)) {
	if f.ClearError {
		remove("last_error", "last_errcode", "last_error_class", "last_error_at")
	}
	if f.LastError != nil {
		set("last_error", *f.LastError)
	}
	if f.LastErrCode != nil {
		set("last_errcode", int64(*f.LastErrCode))
	}
	if f.LastErrorClass != nil {
		set("last_error_class", *f.LastErrorClass)
	}
	if !f.LastErrorAt.IsZero() {
		set("last_error_at", f.LastErrorAt.UnixMilli())
	}
	if f.ClearBlocks {
		remove("blocked_until", "force_blocked_until", "blocked_secret_version")
	}
	if f.BlockedUntil != nil {
		set("blocked_until", f.BlockedUntil.UnixMilli())
	}
	if f.ForceBlockedUntil != nil {
		set("force_blocked_until", f.ForceBlockedUntil.UnixMilli())
	}
	if f.BlockedSecretVersion != nil {
		set("blocked_secret_version", *f.BlockedSecretVersion)
	}
	if f.CallsDay != nil {
		set("calls_day", *f.CallsDay)
	}
	if f.CallsToday != nil {
		set("calls_today", int64(*f.CallsToday))
	}
	if !f.LastOnDemandAt.IsZero() {
		set("last_on_demand_at", f.LastOnDemandAt.UnixMilli())
	}
	if f.VerifiedFP != nil {
		set("verified_fp", *f.VerifiedFP)
	}
	if !f.VerifiedAt.IsZero() {
		set("verified_at", f.VerifiedAt.UnixMilli())
	}
	if f.DriftCount != nil {
		set("drift_count", int64(*f.DriftCount))
	}
	if !f.LastDriftAt.IsZero() {
		set("last_drift_at", f.LastDriftAt.UnixMilli())
	}
	if !f.SupersededAt.IsZero() {
		set("superseded_at", f.SupersededAt.UnixMilli())
	}
}

func (f Fields) apply(u *update) {
	f.Attributes(func(attr string, v any) {
		switch v := v.(type) {
		case string:
			u.set(attr, str(v))
		case int64:
			u.set(attr, num(v))
		}
	}, u.remove)
}

// Release gives up owner's lease, writing f in the same call. It returns
// ErrFenced when owner no longer holds the lease (it expired and was taken);
// the fields are then not written.
func (t *Table) Release(ctx context.Context, app, owner string, now time.Time, f Fields) error {
	u := newUpdate()
	f.apply(u)
	u.set("updated_at", ms(now))
	u.remove("lease_owner", "lease_until")
	u.names["#lo"] = "lease_owner"
	u.values[":owner"] = str(owner)
	if _, err := t.client.UpdateItem(ctx, u.input(t.name, app, "#lo = :owner")); err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return fmt.Errorf("lease: release %s: %w", app, ErrFenced)
		}
		return fmt.Errorf("lease: release %s: %w", app, unavailable(err))
	}
	return nil
}

// Expire marks a deregistered app's state for cleanup by DynamoDB's TTL at
// at. It does not touch a leased item.
func (t *Table) Expire(ctx context.Context, app string, now, at time.Time) error {
	u := newUpdate()
	u.set("ttl", num(at.Unix()))
	u.set("updated_at", ms(now))
	u.names["#lu"] = "lease_until"
	u.values[":now"] = ms(now)
	_, err := t.client.UpdateItem(ctx, u.input(t.name, app, "attribute_not_exists(#lu) OR #lu <= :now"))
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) {
		return fmt.Errorf("lease: expire %s: %w", app, unavailable(err))
	}
	return nil
}

// List returns every app's state, paging through a Scan.
func (t *Table) List(ctx context.Context) ([]State, error) {
	var out []State
	var start map[string]types.AttributeValue
	for {
		page, err := t.client.Scan(ctx, &dynamodb.ScanInput{
			TableName:                 aws.String(t.name),
			FilterExpression:          aws.String("begins_with(pk, :p)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": str("state#")},
			ExclusiveStartKey:         start,
			ConsistentRead:            aws.Bool(true),
		})
		if err != nil {
			return nil, fmt.Errorf("lease: list: %w", unavailable(err))
		}
		for _, item := range page.Items {
			st := decode(item)
			if pk, ok := item["pk"].(*types.AttributeValueMemberS); ok && len(pk.Value) > len("state#") {
				st.App = pk.Value[len("state#"):]
				out = append(out, st)
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		start = page.LastEvaluatedKey
	}
}

// --- encoding

type update struct {
	sets    []string
	removes []string
	names   map[string]string
	values  map[string]types.AttributeValue
}

func newUpdate() *update {
	return &update{names: map[string]string{}, values: map[string]types.AttributeValue{}}
}

func (u *update) set(attr string, v types.AttributeValue) {
	n := "#" + attr
	u.names[n] = attr
	u.values[":"+attr] = v
	u.sets = append(u.sets, n+" = :"+attr)
}

func (u *update) remove(attrs ...string) {
	for _, a := range attrs {
		u.names["#"+a] = a
		u.removes = append(u.removes, "#"+a)
	}
}

func (u *update) input(table, app, cond string) *dynamodb.UpdateItemInput {
	expr := ""
	if len(u.sets) > 0 {
		expr = "SET " + strings.Join(u.sets, ", ")
	}
	if len(u.removes) > 0 {
		if expr != "" {
			expr += " "
		}
		expr += "REMOVE " + strings.Join(u.removes, ", ")
	}
	in := &dynamodb.UpdateItemInput{
		TableName:                 aws.String(table),
		Key:                       key(app),
		UpdateExpression:          aws.String(expr),
		ExpressionAttributeNames:  u.names,
		ExpressionAttributeValues: u.values,
	}
	if cond != "" {
		in.ConditionExpression = aws.String(cond)
		in.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
	}
	if len(in.ExpressionAttributeValues) == 0 {
		in.ExpressionAttributeValues = nil
	}
	return in
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
func ms(t time.Time) types.AttributeValue { return num(t.UnixMilli()) }

func unixOrZero(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

func decode(item map[string]types.AttributeValue) State {
	return DecodeAttributes(func(k string) string {
		if v, ok := item[k].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}, func(k string) int64 {
		if v, ok := item[k].(*types.AttributeValueMemberN); ok {
			i, _ := strconv.ParseInt(v.Value, 10, 64)
			return i
		}
		return 0
	})
}

// DecodeAttributes builds a State (without App) from an item's attributes,
// read through s (strings; "" when absent) and n (numbers; 0 when absent):
// times are Unix milliseconds (0: the zero time) in UTC, the TTL Unix
// seconds. It is the one mapping of the item's attributes to State, shared
// with the in-memory fake.
func DecodeAttributes(s func(attr string) string, n func(attr string) int64) State {
	t := func(k string) time.Time {
		if i := n(k); i != 0 {
			return time.UnixMilli(i).UTC()
		}
		return time.Time{}
	}
	return State{
		Generation:           n("generation"),
		Version:              n("version"),
		Fingerprint:          s("fingerprint"),
		Mode:                 s("mode"),
		AppID:                s("appid"),
		Kind:                 s("kind"),
		Pending:              s("pending"),
		FetchedAt:            t("fetched_at"),
		ExpiresAt:            t("expires_at"),
		LeaseOwner:           s("lease_owner"),
		LeaseUntil:           t("lease_until"),
		LastError:            s("last_error"),
		LastErrCode:          int(n("last_errcode")),
		LastErrorClass:       s("last_error_class"),
		LastErrorAt:          t("last_error_at"),
		BlockedUntil:         t("blocked_until"),
		ForceBlockedUntil:    t("force_blocked_until"),
		BlockedSecretVersion: n("blocked_secret_version"),
		CallsDay:             s("calls_day"),
		CallsToday:           int(n("calls_today")),
		LastOnDemandAt:       t("last_on_demand_at"),
		VerifiedFP:           s("verified_fp"),
		VerifiedAt:           t("verified_at"),
		DriftCount:           int(n("drift_count")),
		LastDriftAt:          t("last_drift_at"),
		SupersededAt:         t("superseded_at"),
		UpdatedAt:            t("updated_at"),
		CleanupAt:            unixOrZero(n("ttl")),
	}
}
