// Package registry reads the apps wxtoken serves. An app is registered
// without redeploying: an item "app#{name}" in wxtoken's DynamoDB table holds
// its settings, and its secret is a SecureString at {prefix}/{name}/secret
// in SSM (never an environment variable or a template parameter).
//
// Item schema (attribute: type, meaning):
//
//	pk                S  "app#" + name; name matches [a-z0-9][a-z0-9-]{0,62}
//	appid             S  appid, or corpid for WeCom (required)
//	kind              S  offiaccount | miniprogram | wecom (required)
//	mode              S  stable (default) | classic; WeCom always uses gettoken
//	refresh_margin_s  N  classic/WeCom: refresh this long before expiry (default 1200)
//	daily_budget      N  WeChat credential calls wxtoken may make per Beijing day
//	min_interval_s    N  minimum seconds between on-demand refreshes (default 60)
//	disabled          BOOL  true: keep the item but stop refreshing
//	tickets           SS tickets kept fresh beside the token: jsapi, wx_card
//	                     (Official Accounts); jsapi, agent_config (WeCom)
//
// Errors wrap the SDK's; ErrNotFound and *InvalidError are returned for a
// missing or malformed app.
package registry

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Kind is the type of WeChat account.
type Kind string

// The kinds of account.
const (
	OfficialAccount Kind = "offiaccount"
	MiniProgram     Kind = "miniprogram"
	WeCom           Kind = "wecom"
)

// Mode is the credential API used for an app.
type Mode string

// The credential APIs.
const (
	Stable   Mode = "stable"  // POST /cgi-bin/stable_token, normal mode
	Classic  Mode = "classic" // GET /cgi-bin/token
	GetToken Mode = "wecom"   // WeCom GET /cgi-bin/gettoken
)

// Defaults for an app's optional settings.
const (
	DefaultRefreshMargin = 20 * time.Minute
	DefaultMinInterval   = 60 * time.Second
	// DefaultClassicBudget leaves most of WeChat's 2000 daily /cgi-bin/token
	// calls to humans and emergencies; the schedule uses about 15 a day.
	DefaultClassicBudget = 200
	// DefaultStableBudget is far under stable_token's 500,000 a day.
	DefaultStableBudget = 1000
	// DefaultWeComBudget: gettoken is frequency-limited, not counted.
	DefaultWeComBudget = 1000
)

// ErrNotFound means no app of that name is registered.
var ErrNotFound = errors.New("registry: app not found")

// InvalidError is a registered app whose item cannot be used.
type InvalidError struct {
	App    string
	Reason string
}

// Error implements error.
func (e *InvalidError) Error() string {
	return fmt.Sprintf("registry: app %s: %s", e.App, e.Reason)
}

// App is a registered WeChat account credential.
type App struct {
	Name  string
	AppID string
	Kind  Kind
	Mode  Mode
	// RefreshMargin: classic and WeCom tokens are refreshed when less than
	// this is left.
	RefreshMargin time.Duration
	// DailyBudget bounds wxtoken's credential calls per Beijing day.
	DailyBudget int
	// MinInterval is the minimum time between on-demand refreshes.
	MinInterval time.Duration
	Disabled    bool
	// Tickets are the tickets kept fresh beside the token, each refreshed
	// RefreshMargin before it expires.
	Tickets TicketSet
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidName reports whether s is a valid app name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// DynamoDB is the subset of the DynamoDB client the registry calls.
type DynamoDB interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// Registry reads apps from one table.
type Registry struct {
	client DynamoDB
	table  string
}

// New returns the registry in table.
func New(client DynamoDB, table string) *Registry { return &Registry{client: client, table: table} }

// Get returns the app name, ErrNotFound when it is not registered, or an
// *InvalidError when its item is malformed.
func (r *Registry) Get(ctx context.Context, name string) (App, error) {
	if !ValidName(name) {
		return App{}, fmt.Errorf("registry: %q: %w", name, ErrNotFound)
	}
	out, err := r.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(r.table),
		Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "app#" + name}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return App{}, fmt.Errorf("registry: get %s: %w", name, err)
	}
	if len(out.Item) == 0 {
		return App{}, fmt.Errorf("registry: %s: %w", name, ErrNotFound)
	}
	return Decode(name, out.Item)
}

// List returns every registered app; malformed items are returned separately
// as *InvalidError so that one bad item never hides the others.
func (r *Registry) List(ctx context.Context) ([]App, []error, error) {
	var apps []App
	var bad []error
	var start map[string]types.AttributeValue
	for {
		page, err := r.client.Scan(ctx, &dynamodb.ScanInput{
			TableName:                 aws.String(r.table),
			FilterExpression:          aws.String("begins_with(pk, :p)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": &types.AttributeValueMemberS{Value: "app#"}},
			ExclusiveStartKey:         start,
			ConsistentRead:            aws.Bool(true),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("registry: list: %w", err)
		}
		for _, item := range page.Items {
			pk, _ := item["pk"].(*types.AttributeValueMemberS)
			if pk == nil {
				continue
			}
			name := pk.Value[len("app#"):]
			app, err := Decode(name, item)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			apps = append(apps, app)
		}
		if len(page.LastEvaluatedKey) == 0 {
			return apps, bad, nil
		}
		start = page.LastEvaluatedKey
	}
}

// Decode turns an app item into an App, applying defaults; it returns an
// *InvalidError naming what is wrong, including a breach of the rules of
// validate.go that protect WeChat's quota (Validate checks all the rules).
func Decode(name string, item map[string]types.AttributeValue) (App, error) {
	bad := func(format string, args ...any) (App, error) {
		return App{}, &InvalidError{App: name, Reason: fmt.Sprintf(format, args...)}
	}
	if !ValidName(name) {
		return bad("name must match [a-z0-9][a-z0-9-]{0,62}")
	}
	s := func(k string) string {
		if v, ok := item[k].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	n := func(k string) (int64, bool, error) {
		v, ok := item[k]
		if !ok {
			return 0, false, nil
		}
		nv, ok := v.(*types.AttributeValueMemberN)
		if !ok {
			return 0, false, fmt.Errorf("%s must be a number", k)
		}
		i, err := strconv.ParseInt(nv.Value, 10, 64)
		if err != nil || i <= 0 {
			return 0, false, fmt.Errorf("%s must be a positive integer, got %s", k, nv.Value)
		}
		return i, true, nil
	}
	app := App{Name: name, AppID: s("appid"), Kind: Kind(s("kind")), Mode: Mode(s("mode"))}
	if app.AppID == "" {
		return bad("appid is required")
	}
	switch app.Kind {
	case OfficialAccount, MiniProgram:
		switch app.Mode {
		case "":
			app.Mode = Stable
		case Stable, Classic:
		default:
			return bad("mode %q: want stable or classic", app.Mode)
		}
	case WeCom:
		if app.Mode != "" && app.Mode != GetToken {
			return bad("mode %q: WeCom apps always use gettoken", app.Mode)
		}
		app.Mode = GetToken
	default:
		return bad("kind %q: want offiaccount, miniprogram or wecom", app.Kind)
	}
	margin, ok, err := n("refresh_margin_s")
	if err != nil {
		return bad("%v", err)
	}
	app.RefreshMargin = DefaultRefreshMargin
	if ok {
		app.RefreshMargin = time.Duration(margin) * time.Second
	}
	budget, ok, err := n("daily_budget")
	if err != nil {
		return bad("%v", err)
	}
	switch {
	case ok:
		app.DailyBudget = int(budget)
	case app.Mode == Classic:
		app.DailyBudget = DefaultClassicBudget
	case app.Mode == GetToken:
		app.DailyBudget = DefaultWeComBudget
	default:
		app.DailyBudget = DefaultStableBudget
	}
	interval, ok, err := n("min_interval_s")
	if err != nil {
		return bad("%v", err)
	}
	app.MinInterval = DefaultMinInterval
	if ok {
		app.MinInterval = time.Duration(interval) * time.Second
	}
	if v, ok := item["disabled"].(*types.AttributeValueMemberBOOL); ok {
		app.Disabled = v.Value
	}
	if app.Tickets, err = decodeTickets(app.Kind, item); err != nil {
		return bad("%v", err)
	}
	// The rules that protect WeChat's quota hold for stored items too
	// (validate.go); the rest are checked when an operator registers.
	if err := checkStored(app); err != nil {
		return App{}, err
	}
	return app, nil
}

// Item returns the DynamoDB item that registers app, for tools and tests;
// zero settings are left out so that defaults apply.
func Item(app App) map[string]types.AttributeValue {
	item := map[string]types.AttributeValue{
		"pk":    &types.AttributeValueMemberS{Value: "app#" + app.Name},
		"appid": &types.AttributeValueMemberS{Value: app.AppID},
		"kind":  &types.AttributeValueMemberS{Value: string(app.Kind)},
	}
	if app.Mode != "" {
		item["mode"] = &types.AttributeValueMemberS{Value: string(app.Mode)}
	}
	num := func(k string, v int64) {
		if v > 0 {
			item[k] = &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
		}
	}
	num("refresh_margin_s", int64(app.RefreshMargin/time.Second))
	num("daily_budget", int64(app.DailyBudget))
	num("min_interval_s", int64(app.MinInterval/time.Second))
	if app.Disabled {
		item["disabled"] = &types.AttributeValueMemberBOOL{Value: true}
	}
	if ts := ticketsAttribute(app.Tickets); ts != nil {
		item["tickets"] = ts
	}
	return item
}
