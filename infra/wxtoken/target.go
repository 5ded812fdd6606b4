package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/smithy-go"

	"github.com/wxtoken/wxtoken/pkg/config"
)

// What `make dev` (infra/local/dev) runs is in the env file it writes to its
// state directory while it runs: the engines' endpoints and credentials, its
// table, prefix and API address (WXTOKEN_TABLE, WXTOKEN_PARAMETER_PREFIX,
// WXTOKEN_API_URL).
const devDir = ".cache/dev"

// target is the wxtoken deployment the command works on.
type target struct {
	// Name is the stack's name, or "make dev".
	Name   string
	Region string
	Table  string
	Prefix string
	// APIURL is the refresh API's base URL ("" when unknown: no first
	// token is asked for).
	APIURL string
	// WeChatURLs are WeChat's API base URLs for the one call the command
	// makes to WeChat itself (clear-quota); nil means WeChat's domains.
	// make dev's are its sandbox.
	WeChatURLs []string
	// KMSKeyID encrypts the secrets the command stores: the stack's
	// KmsKeyArn parameter when set, otherwise SSM's default key.
	KMSKeyID string
	// Sign: API calls are SigV4-signed (a deployed stack's API requires
	// it; make dev's does not check it).
	Sign bool
	// Endpoints and credentials of make dev's engines (empty for AWS).
	DynamoDBEndpoint, SSMEndpoint string
	AccessKeyID, SecretAccessKey  string
}

// Stack outputs and parameters the command reads (template.yaml).
const (
	outputTable     = "TableName"
	outputPrefix    = "ParameterPrefix"
	outputAPIURL    = "ApiUrl"
	parameterKMSKey = "KmsKeyArn"
)

// stackTarget reads the target from a stack's outputs and parameters.
func stackTarget(o cftypes.Stack, region string) (target, error) {
	t := target{Name: aws.ToString(o.StackName), Region: region, Sign: true}
	for _, out := range o.Outputs {
		v := aws.ToString(out.OutputValue)
		switch aws.ToString(out.OutputKey) {
		case outputTable:
			t.Table = v
		case outputPrefix:
			t.Prefix = v
		case outputAPIURL:
			t.APIURL = v
		}
	}
	for _, p := range o.Parameters {
		if aws.ToString(p.ParameterKey) == parameterKMSKey {
			t.KMSKeyID = aws.ToString(p.ParameterValue)
		}
	}
	if t.Table == "" || t.Prefix == "" {
		return target{}, fail(ExitNotFound, "stack %s has no %s or %s output: is it a wxtoken stack, and is its deployment finished?", t.Name, outputTable, outputPrefix)
	}
	return t, nil
}

// CloudFormation is what the command needs of CloudFormation.
type CloudFormation interface {
	DescribeStacks(ctx context.Context, in *cloudformation.DescribeStacksInput, optFns ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
}

// describeStack reads stack's target through cf.
func describeStack(ctx context.Context, cf CloudFormation, stack, region string) (target, error) {
	out, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "ValidationError" && strings.Contains(api.ErrorMessage(), "does not exist") {
		return target{}, fail(ExitNotFound, "stack %s does not exist in %s: check --stack and --region (or AWS_REGION)", stack, region)
	}
	if err != nil {
		return target{}, wrap(ExitFailed, err, "read stack %s (your AWS credentials need cloudformation:DescribeStacks)", stack)
	}
	if len(out.Stacks) == 0 {
		return target{}, fail(ExitNotFound, "stack %s does not exist in %s", stack, region)
	}
	return stackTarget(out.Stacks[0], region)
}

// localTarget is make dev's target, with the engines' endpoints and
// credentials read from the env file it writes in dir while it runs.
func localTarget(dir string) (target, error) {
	path := filepath.Join(dir, "env")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return target{}, fail(ExitFailed, "no running make dev found (%s is missing): start `make dev` in another terminal, or pass --dev-dir", path)
	}
	if err != nil {
		return target{}, wrap(ExitFailed, err, "read %s", path)
	}
	defer f.Close()
	env, err := parseEnvFile(f)
	if err != nil {
		return target{}, wrap(ExitFailed, err, "read %s", path)
	}
	wechatURLs, err := config.BaseURLs(env[config.EnvWeChatBaseURLs])
	if err != nil {
		return target{}, wrap(ExitFailed, err, "read %s: %s", path, config.EnvWeChatBaseURLs)
	}
	t := target{Name: "make dev", Region: env["AWS_REGION"], WeChatURLs: wechatURLs,
		Table: env[config.EnvTable], Prefix: env[config.EnvParameterPrefix], APIURL: env[config.EnvAPIURL],
		DynamoDBEndpoint: env["AWS_ENDPOINT_URL_DYNAMODB"], SSMEndpoint: env["AWS_ENDPOINT_URL_SSM"],
		AccessKeyID: env["AWS_ACCESS_KEY_ID"], SecretAccessKey: env["AWS_SECRET_ACCESS_KEY"]}
	if t.DynamoDBEndpoint == "" || t.SSMEndpoint == "" || t.Table == "" || t.Prefix == "" || t.APIURL == "" {
		return target{}, fail(ExitFailed, "%s does not name the engines, table, prefix and API: restart make dev (an older one wrote less)", path)
	}
	if t.Region == "" {
		t.Region = "us-east-1"
	}
	return t, nil
}

// parseEnvFile reads "export K=V" lines (what infra/local/dev writes).
func parseEnvFile(r io.Reader) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
		if k, v, ok := strings.Cut(line, "="); ok && k != "" && !strings.HasPrefix(k, "#") {
			env[k] = strings.Trim(v, `"'`)
		}
	}
	return env, sc.Err()
}

// override applies the explicit --table, --prefix and --api-url flags.
func (t target) override(o options) target {
	if o.table != "" {
		t.Table = o.table
	}
	if o.prefix != "" {
		t.Prefix = o.prefix
	}
	if o.apiURL != "" {
		t.APIURL = o.apiURL
	}
	t.Prefix = strings.TrimRight(t.Prefix, "/")
	t.APIURL = strings.TrimRight(t.APIURL, "/")
	return t
}

// String names the target for messages.
func (t target) String() string {
	if t.Name == "" {
		return fmt.Sprintf("table %s", t.Table)
	}
	return t.Name
}
