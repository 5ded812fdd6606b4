package awstest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
)

// TestDynamoDBConditionalPut proves the primitive the refresh lease is built
// on: a PutItem conditioned on attribute_not_exists succeeds once, and a
// second one fails with ConditionalCheckFailedException carrying the holder.
func TestDynamoDBConditionalPut(t *testing.T) {
	cfg := awstest.Config(t, awstest.DynamoDB)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := dynamodb.NewFromConfig(cfg)
	table := awstest.Table(t, cfg)

	put := func(owner string) error {
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(table),
			Item: map[string]ddbtypes.AttributeValue{
				"pk":    &ddbtypes.AttributeValueMemberS{Value: "lease#demo"},
				"owner": &ddbtypes.AttributeValueMemberS{Value: owner},
			},
			ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
			ReturnValuesOnConditionCheckFailure: ddbtypes.ReturnValuesOnConditionCheckFailureAllOld,
		})
		return err
	}

	if err := put("first"); err != nil {
		t.Fatalf("first conditional PutItem: got %v, want success", err)
	}
	err := put("second")
	var ccf *ddbtypes.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("second conditional PutItem: got %v (%T), want ConditionalCheckFailedException", err, err)
	}
	owner, ok := ccf.Item["owner"].(*ddbtypes.AttributeValueMemberS)
	if !ok || owner.Value != "first" {
		t.Errorf("ConditionalCheckFailedException.Item[owner] = %#v, want \"first\"", ccf.Item["owner"])
	}

	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "lease#demo"}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	if got, _ := out.Item["owner"].(*ddbtypes.AttributeValueMemberS); got == nil || got.Value != "first" {
		t.Errorf("stored owner = %#v, want \"first\" (the failed put must not have written)", out.Item["owner"])
	}
}

// TestSSMSecureString proves what the token store relies on: a SecureString
// comes back decrypted only when asked, and its Version goes up by one on
// every overwrite.
func TestSSMSecureString(t *testing.T) {
	cfg := awstest.Config(t, awstest.SSM)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := ssm.NewFromConfig(cfg)
	name := "/" + awstest.Name(t, "wxtoken") + "/demo/access_token"
	t.Cleanup(func() {
		_, _ = client.DeleteParameter(context.Background(), &ssm.DeleteParameterInput{Name: aws.String(name)})
	})

	put := func(value string, overwrite bool) (int64, error) {
		out, err := client.PutParameter(ctx, &ssm.PutParameterInput{
			Name:      aws.String(name),
			Value:     aws.String(value),
			Type:      ssmtypes.ParameterTypeSecureString,
			KeyId:     aws.String("alias/aws/ssm"),
			Overwrite: aws.Bool(overwrite),
		})
		if err != nil {
			return 0, err
		}
		return out.Version, nil
	}
	get := func(decrypt bool) (value string, version int64) {
		t.Helper()
		out, err := client.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(decrypt)})
		if err != nil {
			t.Fatalf("GetParameter(decrypt=%v): %v", decrypt, err)
		}
		if out.Parameter.Type != ssmtypes.ParameterTypeSecureString {
			t.Errorf("type = %s, want SecureString", out.Parameter.Type)
		}
		return aws.ToString(out.Parameter.Value), out.Parameter.Version
	}

	steps := []struct {
		name      string
		value     string
		overwrite bool
		want      int64
	}{
		{"create", "token-one", false, 1},
		{"overwrite", "token-two", true, 2},
		{"overwrite again", "token-three", true, 3},
	}
	var prev int64
	for _, s := range steps {
		v, err := put(s.value, s.overwrite)
		if err != nil {
			t.Fatalf("%s: PutParameter: %v", s.name, err)
		}
		if v != s.want || v <= prev {
			t.Fatalf("%s: PutParameter version = %d, want %d (> %d)", s.name, v, s.want, prev)
		}
		prev = v
		gotValue, gotVersion := get(true)
		if gotValue != s.value || gotVersion != s.want {
			t.Errorf("%s: GetParameter(decrypt) = %q v%d, want %q v%d", s.name, gotValue, gotVersion, s.value, s.want)
		}
		if raw, _ := get(false); raw == s.value || strings.TrimSpace(raw) == "" {
			t.Errorf("%s: GetParameter without decryption returned %q, want an encrypted value", s.name, raw)
		}
	}

	_, err := put("token-four", false)
	var exists *ssmtypes.ParameterAlreadyExists
	if !errors.As(err, &exists) {
		t.Errorf("PutParameter without Overwrite on an existing name: got %v, want ParameterAlreadyExists", err)
	}
	if v, _ := get(true); v != "token-three" {
		t.Errorf("after refused put, value = %q, want token-three", v)
	}
}
