package awstest_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
)

// quickRetryer is the SDK's standard retryer (same attempts, same retryable
// and throttle codes, same retry quota) with millisecond backoff.
func quickRetryer(attempts int) func() aws.Retryer {
	return func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		})
	}
}

func proxiedDynamo(t *testing.T, cfg aws.Config, p *awstest.Proxy, attempts int) *dynamodb.Client {
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(p.URL)
		o.Retryer = quickRetryer(attempts)()
		o.HTTPClient = awshttp.NewBuildableClient()
	})
}

func proxiedSSM(t *testing.T, cfg aws.Config, p *awstest.Proxy, attempts int) *ssm.Client {
	return ssm.NewFromConfig(cfg, func(o *ssm.Options) {
		o.BaseEndpoint = aws.String(p.URL)
		o.Retryer = quickRetryer(attempts)()
		o.HTTPClient = awshttp.NewBuildableClient()
	})
}

func isThrottle(err error) bool {
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
}

func putItem(ctx context.Context, db *dynamodb.Client, table, pk string) error {
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table),
		Item: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: pk}}})
	return err
}

func putParam(ctx context.Context, c *ssm.Client, name, value string) error {
	_, err := c.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value),
		Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)})
	return err
}

// TestProxyThrottleWireFormat shows that the SDK reads each service's
// throttling answer as that service's typed throttling error, and that its
// retryer classes it as a throttle.
func TestProxyThrottleWireFormat(t *testing.T) {
	cfg := awstest.Config(t, awstest.DynamoDB, awstest.SSM)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	table := awstest.Table(t, cfg)
	tests := []struct {
		name string
		code string
		call func(p *awstest.Proxy) error
		op   string
		is   func(error) bool
	}{
		{"DynamoDB ThrottlingException", "", func(p *awstest.Proxy) error {
			return putItem(ctx, proxiedDynamo(t, cfg, p, 1), table, "a")
		}, "DynamoDB_20120810.PutItem", func(err error) bool {
			var e *ddbtypes.ThrottlingException
			return errors.As(err, &e)
		}},
		{"DynamoDB ProvisionedThroughputExceededException", "ProvisionedThroughputExceededException", func(p *awstest.Proxy) error {
			return putItem(ctx, proxiedDynamo(t, cfg, p, 1), table, "b")
		}, "DynamoDB_20120810.PutItem", func(err error) bool {
			var e *ddbtypes.ProvisionedThroughputExceededException
			return errors.As(err, &e)
		}},
		{"SSM ThrottlingException", "", func(p *awstest.Proxy) error {
			return putParam(ctx, proxiedSSM(t, cfg, p, 1), "/"+awstest.Name(t, "proxy")+"/p", "v")
		}, "AmazonSSM.PutParameter", func(err error) bool {
			var e *ssmtypes.ThrottlingException
			return errors.As(err, &e)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := os.Getenv(awstest.EndpointEnv(awstest.DynamoDB))
			if tt.op == "AmazonSSM.PutParameter" {
				target = os.Getenv(awstest.EndpointEnv(awstest.SSM))
			}
			p := awstest.NewProxy(t, target)
			p.Inject(awstest.Fault{Op: tt.op, Kind: awstest.Throttle, Code: tt.code})
			err := tt.call(p)
			if err == nil || !tt.is(err) {
				t.Fatalf("error %v, want the service's typed throttling error", err)
			}
			if !isThrottle(err) {
				t.Errorf("the SDK's retryer does not class %v as a throttle", err)
			}
			var re *awshttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != 400 {
				t.Errorf("error %v, want HTTP 400", err)
			}
			if got, fwd := p.Injected(tt.op), p.Forwarded(""); got != 1 || fwd != 0 {
				t.Errorf("injected %d, forwarded %d; want 1 and 0", got, fwd)
			}
		})
	}
}

// TestProxyFaultKinds runs each kind against the real engines and checks
// what reached them.
func TestProxyFaultKinds(t *testing.T) {
	cfg := awstest.Config(t, awstest.DynamoDB, awstest.SSM)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	table := awstest.Table(t, cfg)
	direct := dynamodb.NewFromConfig(cfg)
	directSSM := ssm.NewFromConfig(cfg)
	exists := func(pk string) bool {
		out, err := direct.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: pk}}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item != nil
	}
	version := func(name string) int64 {
		out, err := directSSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)})
		var nf *ssmtypes.ParameterNotFound
		if errors.As(err, &nf) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.Parameter.Version
	}

	t.Run("throttles within the SDK's attempts are retried away", func(t *testing.T) {
		p := awstest.NewProxy(t, os.Getenv(awstest.EndpointEnv(awstest.DynamoDB)))
		p.Inject(awstest.Fault{Op: "DynamoDB_20120810.PutItem", Kind: awstest.Throttle, Times: 2})
		if err := putItem(ctx, proxiedDynamo(t, cfg, p, 3), table, "retried"); err != nil {
			t.Fatalf("put after two throttles with three attempts: %v", err)
		}
		if inj, fwd := p.Injected("DynamoDB_20120810.PutItem"), p.Forwarded("DynamoDB_20120810.PutItem"); inj != 2 || fwd != 1 {
			t.Errorf("injected %d, forwarded %d; want 2 and 1", inj, fwd)
		}
		if !exists("retried") {
			t.Error("the item is not in the table")
		}
	})

	t.Run("503 on PutParameter only", func(t *testing.T) {
		p := awstest.NewProxy(t, os.Getenv(awstest.EndpointEnv(awstest.SSM)))
		p.Inject(awstest.Fault{Op: "AmazonSSM.PutParameter", Kind: awstest.ServerError, Status: 503})
		c := proxiedSSM(t, cfg, p, 3)
		name := "/" + awstest.Name(t, "proxy") + "/p"
		err := putParam(ctx, c, name, "v")
		var re *awshttp.ResponseError
		if !errors.As(err, &re) || re.HTTPStatusCode() != 503 {
			t.Fatalf("error %v, want HTTP 503 after the retries", err)
		}
		if got := p.Injected("AmazonSSM.PutParameter"); got != 3 {
			t.Errorf("%d PutParameter calls answered 503, want 3 (the SDK retries 5xx)", got)
		}
		if v := version(name); v != 0 {
			t.Errorf("the parameter exists (version %d); no write may reach the engine", v)
		}
		// Reads are not selected.
		_, err = c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)})
		var nf *ssmtypes.ParameterNotFound
		if !errors.As(err, &nf) {
			t.Errorf("GetParameter through the proxy: %v, want ParameterNotFound from the engine", err)
		}
		if got := p.Forwarded("AmazonSSM.GetParameter"); got != 1 {
			t.Errorf("%d GetParameter calls forwarded, want 1", got)
		}
	})

	t.Run("a dropped connection is retried", func(t *testing.T) {
		p := awstest.NewProxy(t, os.Getenv(awstest.EndpointEnv(awstest.SSM)))
		p.Inject(awstest.Fault{Op: "AmazonSSM.PutParameter", Kind: awstest.Drop, Times: 1})
		name := "/" + awstest.Name(t, "proxy") + "/p"
		if err := putParam(ctx, proxiedSSM(t, cfg, p, 3), name, "v"); err != nil {
			t.Fatalf("put after one dropped connection: %v", err)
		}
		if v := version(name); v != 1 {
			t.Errorf("version %d, want 1: the dropped call must not reach the engine", v)
		}
	})

	t.Run("a lost answer hides a write that happened", func(t *testing.T) {
		p := awstest.NewProxy(t, os.Getenv(awstest.EndpointEnv(awstest.SSM)))
		p.Inject(awstest.Fault{Op: "AmazonSSM.PutParameter", Kind: awstest.LoseAnswer, Times: 1})
		name := "/" + awstest.Name(t, "proxy") + "/p"
		if err := putParam(ctx, proxiedSSM(t, cfg, p, 1), name, "v"); err == nil {
			t.Fatal("the put reported success although its answer was lost")
		}
		if v := version(name); v != 1 {
			t.Errorf("version %d, want 1: the engine carried the write out", v)
		}
		if inj, fwd := p.Injected(""), p.Forwarded(""); inj != 1 || fwd != 1 {
			t.Errorf("injected %d, forwarded %d; want 1 and 1", inj, fwd)
		}
	})

	t.Run("skip, times and an even fraction", func(t *testing.T) {
		p := awstest.NewProxy(t, os.Getenv(awstest.EndpointEnv(awstest.DynamoDB)))
		db := proxiedDynamo(t, cfg, p, 1)
		p.Inject(awstest.Fault{Op: "DynamoDB_20120810.PutItem", Kind: awstest.Throttle, Skip: 1, Times: 1})
		var got []bool
		for i := 0; i < 3; i++ {
			got = append(got, putItem(ctx, db, table, "skip") == nil)
		}
		if want := []bool{true, false, true}; !equal(got, want) {
			t.Errorf("PutItem succeeded %v, want %v", got, want)
		}
		p.Inject(awstest.Fault{Op: "DynamoDB_20120810.GetItem", Kind: awstest.Throttle, Fraction: 2.0 / 3})
		got = nil
		for i := 0; i < 6; i++ {
			_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table),
				Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "skip"}}})
			got = append(got, err == nil)
		}
		if want := []bool{true, false, false, true, false, false}; !equal(got, want) {
			t.Errorf("GetItem succeeded %v, want %v", got, want)
		}
		if inj := p.Injected(""); inj != 5 {
			t.Errorf("%d calls injected, want 5", inj)
		}
		p.Clear()
		if err := putItem(ctx, db, table, "cleared"); err != nil {
			t.Errorf("after Clear: %v", err)
		}
	})
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
