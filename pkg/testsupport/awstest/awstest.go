// Package awstest connects integration tests to the local AWS test bed:
// DynamoDB Local and moto server (SSM, KMS), which `make test` starts and
// announces through the AWS SDK's standard endpoint variables
// AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL_SSM.
//
// A test that needs an engine calls Config first. When the engine's endpoint
// is not set, the test is skipped with a message saying how to run it — unless
// WXTOKEN_TESTBED=required (set by the test bed), in which case it fails, so
// that a missing engine can never pass silently in CI.
package awstest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wxtoken/wxtoken/pkg/testsupport/awscalls"
)

// Service names an engine of the test bed by the SDK ID that its endpoint
// variable is derived from (AWS_ENDPOINT_URL_<SDK ID>).
type Service string

// The services the test bed provides.
const (
	DynamoDB Service = "DYNAMODB"
	SSM      Service = "SSM"
	KMS      Service = "KMS"
)

// RequiredEnv is the variable that turns a missing engine from a skip into a
// failure; the test bed sets it to "required".
const RequiredEnv = "WXTOKEN_TESTBED"

// EndpointEnv returns the name of the variable holding the service's endpoint.
func EndpointEnv(s Service) string { return "AWS_ENDPOINT_URL_" + string(s) }

// Config returns an AWS SDK configuration for the test bed after checking that
// every named service has an endpoint. It uses static dummy credentials and
// the region from AWS_REGION (default us-east-1), so it never reaches a real
// account. It skips or fails tb (see the package comment) when an endpoint is
// missing, and fails tb when the configuration cannot be loaded.
func Config(tb testing.TB, services ...Service) aws.Config {
	tb.Helper()
	var missing []string
	for _, s := range services {
		if os.Getenv(EndpointEnv(s)) == "" {
			missing = append(missing, EndpointEnv(s))
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("integration test needs the local AWS test bed, but %s is not set; "+
			"run `make test` (or `make testbed` and export what it prints)", strings.Join(missing, ", "))
		if os.Getenv(RequiredEnv) == "required" {
			tb.Fatalf("%s=required: %s", RequiredEnv, msg)
		} else {
			tb.Skip(msg)
		}
		return aws.Config{}
	}
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")),
	)
	if err != nil {
		tb.Fatalf("awstest: load AWS config: %v", err)
	}
	return cfg
}

// AsEntryPoint returns cfg signing each call as the function whose refresh
// core entry point made it (awscalls.EntryPoint), for tests that drive the
// refresh core directly.
func AsEntryPoint(cfg aws.Config) aws.Config {
	cfg = cfg.Copy()
	cfg.Credentials = awscalls.EntryPoint{}
	return cfg
}

var seq atomic.Uint64

// Name returns a name unique to this test run, made of letters, digits and
// dashes and starting with prefix, for tables and parameters that tests of
// several packages create concurrently in the same engines.
func Name(tb testing.TB, prefix string) string {
	tb.Helper()
	var b strings.Builder
	for _, r := range strings.ToLower(tb.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	test := b.String()
	if len(test) > 40 {
		test = test[:40]
	}
	return fmt.Sprintf("%s-%s-%x-%d", prefix, test, time.Now().UnixNano(), seq.Add(1))
}

// Table creates a table with wxtoken's key schema (partition key "pk", a
// string) in the test bed's DynamoDB, waits until it is active, deletes it
// when the test ends, and returns its name. It fails tb on error.
func Table(tb testing.TB, cfg aws.Config) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := dynamodb.NewFromConfig(cfg)
	name := Name(tb, "wxtoken")
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
	})
	if err != nil {
		tb.Fatalf("awstest: create table %s: %v", name, err)
	}
	tb.Cleanup(func() {
		_, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 20*time.Second); err != nil {
		tb.Fatalf("awstest: wait for table %s: %v", name, err)
	}
	return name
}
