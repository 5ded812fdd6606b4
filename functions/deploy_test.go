package functions_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/config"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awscalls"
	"github.com/wxtoken/wxtoken/pkg/testsupport/awstest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/lambdatest"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// artifactBucket is where infra/local/sam/translate.py puts every function's
// code: s3://wxtoken-artifacts/<FunctionLogicalId>.zip.
const artifactBucket = "wxtoken-artifacts"

// PythonEnv names the Python interpreter (with the SAM translator and PyYAML)
// TestDeployedStack runs infra/local/sam/*.py with; by default the test bed's
// virtualenv, <repo>/.cache/venv/bin/python.
const PythonEnv = "WXTOKEN_PYTHON"

// motoUnbuilt are the resource types moto 5.x's CloudFormation accepts in a
// template but does not create: CreateStack succeeds, and ListStackResources
// returns one row per such resource with an empty LogicalResourceId,
// ResourceType and PhysicalResourceId (status CREATE_COMPLETE).
var motoUnbuilt = map[string]bool{
	"AWS::ApiGatewayV2::Api":         true,
	"AWS::ApiGatewayV2::Stage":       true,
	"AWS::CloudWatch::Alarm":         true,
	"AWS::Lambda::EventInvokeConfig": true,
}

// deployment is template.yaml, translated by SAM, created as a stack in
// moto's CloudFormation.
type deployment struct {
	t       *testing.T
	cfg     aws.Config // dummy credentials and the test bed's region
	motoURL string
	stack   string
	prefix  string
	params  map[string]string
	// template is the template CreateStack got, for the properties moto
	// accepts but does not apply.
	template map[string]any
	// resources are the stack's resources by logical ID (those moto built).
	resources map[string]cftypes.StackResourceSummary
	// unnamed counts ListStackResources rows without a logical ID.
	unnamed int
	outputs map[string]string
	// created is set once CreateStack has accepted the template.
	created bool
	// codeSHA is each function's zip's SHA-256 (base64, as Lambda reports
	// it), by logical ID.
	codeSHA map[string]string

	cf   *cloudformation.Client
	ddb  *dynamodb.Client
	lam  *lambda.Client
	ssm  *ssm.Client
	s3   *s3.Client
	iam  *iam.Client
	ev   *eventbridge.Client
	logs *cloudwatchlogs.Client
}

// TestDeployedStack deploys the SAM-translated template.yaml into moto's
// CloudFormation with the two function binaries as their code, reads back
// what moto created and checks it against what the code expects, then runs
// the binaries with the environment read back from the deployed functions
// against the deployed table and parameter prefix (and the WeChat sandbox).
//
// What moto accepts but does not build or apply is listed in the log and
// checked in the template CreateStack received instead; see motoUnbuilt
// and infra/local/sam/moto_template.py for what had to be adapted.
func TestDeployedStack(t *testing.T) {
	started := time.Now()
	cfg := awstest.Config(t, awstest.DynamoDB, awstest.SSM)
	motoURL := os.Getenv(awstest.EndpointEnv(awstest.SSM))
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	python := pythonFor(t, root)

	d := &deployment{
		t: t, cfg: cfg, motoURL: motoURL,
		// Stack names go into generated physical names
		// (<stack>-ScheduledRefreshFunction-<12 chars>), and Lambda function
		// and IAM role names are limited to 64 characters: keep only the
		// unique tail of awstest.Name.
		stack:   shortName(awstest.Name(t, "wxd")),
		prefix:  "/" + awstest.Name(t, "deployed"),
		codeSHA: map[string]string{},
	}
	d.params = map[string]string{
		"ParameterPrefix":    d.prefix,
		"LogLevel":           "debug",
		"RefreshConcurrency": "4",
	}
	ep := aws.String(motoURL)
	d.cf = cloudformation.NewFromConfig(cfg, func(o *cloudformation.Options) { o.BaseEndpoint = ep })
	d.ddb = dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = ep })
	d.lam = lambda.NewFromConfig(cfg, func(o *lambda.Options) { o.BaseEndpoint = ep })
	d.ssm = ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.BaseEndpoint = ep })
	d.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = ep; o.UsePathStyle = true })
	d.iam = iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = ep })
	d.ev = eventbridge.NewFromConfig(cfg, func(o *eventbridge.Options) { o.BaseEndpoint = ep })
	d.logs = cloudwatchlogs.NewFromConfig(cfg, func(o *cloudwatchlogs.Options) { o.BaseEndpoint = ep })

	// Translate, and create the artifact bucket, while the binaries build.
	// The bucket goes last (cleanups run in reverse), after the objects
	// upload puts in it; deleting it fails harmlessly while another run
	// still has objects there.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = d.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(artifactBucket)})
	})
	tplc, done := make(chan error, 1), make(chan struct{})
	tplPath := filepath.Join(t.TempDir(), "moto.json")
	go func() {
		defer close(done)
		if err := d.prepareTemplate(root, python, tplPath); err != nil {
			tplc <- err
			return
		}
		tplc <- d.createBucket()
	}()
	t.Cleanup(func() { <-done }) // a failed build must not outlive this
	bins := map[string]string{
		"ScheduledRefreshFunction": lambdatest.Build(t, scheduledPkg),
		"RefreshApiFunction":       lambdatest.Build(t, apiPkg),
	}
	built := time.Now()
	if err := <-tplc; err != nil {
		t.Fatal(err)
	}
	translated := time.Now()
	d.upload(bins)
	uploaded := time.Now()
	d.create(tplPath)
	t.Logf("deployed stack %s: built %v, translated +%v, uploaded +%v, created +%v",
		d.stack, built.Sub(started).Round(time.Millisecond), translated.Sub(built).Round(time.Millisecond),
		uploaded.Sub(translated).Round(time.Millisecond), time.Since(uploaded).Round(time.Millisecond))

	t.Run("resources moto built", d.checkResources)
	t.Run("table", d.checkTable)
	sched := d.checkFunction(t, "ScheduledRefreshFunction", "ScheduledRefreshLogGroup", "ScheduledRefreshRole", scheduledTimeout)
	apiFn := d.checkFunction(t, "RefreshApiFunction", "RefreshApiLogGroup", "RefreshApiRole", apiTimeout)
	t.Run("schedule", func(t *testing.T) { d.checkSchedule(t, sched) })
	t.Run("log groups", d.checkLogGroups)
	t.Run("roles", d.checkRoles)
	t.Run("consumer policy", d.checkConsumerPolicy)
	t.Run("outputs", d.checkOutputs)
	if t.Failed() {
		t.FailNow()
	}

	d.run(t, bins, sched, apiFn)

	t.Run("delete keeps only the table", d.deleteStack)
	t.Logf("wall time %v", time.Since(started).Round(time.Millisecond))
}

// pythonFor returns the interpreter to run the SAM scripts with, or skips
// (fails under WXTOKEN_TESTBED=required) when there is none.
func pythonFor(t *testing.T, root string) string {
	t.Helper()
	python := os.Getenv(PythonEnv)
	if python == "" {
		python = filepath.Join(root, ".cache", "venv", "bin", "python")
	}
	if _, err := os.Stat(python); err != nil {
		msg := fmt.Sprintf("deploying the template needs Python with the SAM translator at %s (set %s, or create the test bed's virtualenv: see infra/local/requirements.txt): %v", python, PythonEnv, err)
		if os.Getenv(awstest.RequiredEnv) == "required" {
			t.Fatalf("%s=required: %s", awstest.RequiredEnv, msg)
		}
		t.Skip(msg)
	}
	return python
}

// shortName keeps the time and sequence number that make an awstest.Name
// unique, behind its prefix: wxd-<test>-<hex>-<n> becomes wxd-<hex>-<n>.
func shortName(name string) string {
	parts := strings.Split(name, "-")
	return parts[0] + "-" + strings.Join(parts[len(parts)-2:], "-")
}

// prepareTemplate translates template.yaml and adapts it for moto
// (infra/local/sam/moto_template.py), writing the result to out.
func (d *deployment) prepareTemplate(root, python, out string) error {
	dir := filepath.Dir(out)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sam := filepath.Join(root, "infra", "local", "sam")
	cmd := exec.CommandContext(ctx, python, filepath.Join(sam, "translate.py"),
		"--template", filepath.Join(root, "template.yaml"), "--out", dir, "--region", d.cfg.Region)
	cmd.Env = pythonEnv()
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("translate template.yaml: %w\n%s", err, msg)
	}
	args := []string{filepath.Join(sam, "moto_template.py"),
		"--in", filepath.Join(dir, "translated."+d.cfg.Region+".json"), "--out", out, "--region", d.cfg.Region}
	for _, k := range sortedKeys(d.params) {
		args = append(args, "--param", k+"="+d.params[k])
	}
	cmd = exec.CommandContext(ctx, python, args...)
	cmd.Env = pythonEnv()
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("adapt the template for moto: %w\n%s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("read the template for moto: %w", err)
	}
	if err := json.Unmarshal(b, &d.template); err != nil {
		return fmt.Errorf("decode %s: %w", out, err)
	}
	return nil
}

// pythonEnv is the test's environment without the empty AWS_ variables the
// test bed sets to blank out a developer's own (AWS_PROFILE=, ...): the SAM
// translator's boto3 takes an empty AWS_PROFILE for a profile named "" and
// fails with ProfileNotFound.
func pythonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") && v == "" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// createBucket creates the artifact bucket in moto unless it exists.
func (d *deployment) createBucket() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := d.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(artifactBucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s in moto: %w", artifactBucket, err)
	}
	return nil
}

// upload zips each binary as `bootstrap` and puts it where the translated
// template's Code points; the objects go when the test ends.
func (d *deployment) upload(bins map[string]string) {
	t := d.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, logical := range sortedKeys(bins) {
		zipped, err := zipBootstrap(bins[logical])
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(zipped)
		d.codeSHA[logical] = base64.StdEncoding.EncodeToString(sum[:])
		key := logical + ".zip"
		if _, err := d.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(artifactBucket), Key: aws.String(key), Body: bytes.NewReader(zipped)}); err != nil {
			t.Fatalf("upload s3://%s/%s: %v", artifactBucket, key, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := d.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(artifactBucket), Key: aws.String(key)}); err != nil {
				t.Errorf("delete s3://%s/%s: %v", artifactBucket, key, err)
			}
		})
	}
}

// zipBootstrap returns a Lambda deployment package holding the file at path
// as an executable `bootstrap`.
func zipBootstrap(path string) ([]byte, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return nil, fmt.Errorf("zip %s: %w", path, err)
	}
	if _, err := w.Write(bin); err != nil {
		return nil, fmt.Errorf("zip %s: %w", path, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("zip %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

// create creates the stack from the template at path, waits for it, and
// reads back its resources and outputs. The stack (and the table it
// retains) is deleted when the test ends.
func (d *deployment) create(path string) {
	t := d.t
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		t.Fatalf("template %s: %v", path, err)
	}
	var params []cftypes.Parameter
	for _, k := range sortedKeys(d.params) {
		params = append(params, cftypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(d.params[k])})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Before CreateStack: moto keeps what it built of a stack it then
	// refuses.
	t.Cleanup(d.cleanup)
	out, err := d.cf.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName:    aws.String(d.stack),
		TemplateBody: aws.String(compact.String()),
		Parameters:   params,
		Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityIam, cftypes.CapabilityCapabilityNamedIam, cftypes.CapabilityCapabilityAutoExpand},
	})
	if err != nil {
		t.Fatalf("create stack %s in moto: %v\n%s", d.stack, err, d.events(d.stack))
	}
	d.created = true
	stack, err := d.waitStack(ctx, aws.ToString(out.StackId), "CREATE_COMPLETE")
	if err != nil {
		t.Fatalf("%v\n%s", err, d.events(aws.ToString(out.StackId)))
	}
	d.outputs = map[string]string{}
	for _, o := range stack.Outputs {
		d.outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	d.resources = map[string]cftypes.StackResourceSummary{}
	pages := cloudformation.NewListStackResourcesPaginator(d.cf, &cloudformation.ListStackResourcesInput{StackName: aws.String(d.stack)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("list the resources of %s: %v", d.stack, err)
		}
		for _, r := range page.StackResourceSummaries {
			if aws.ToString(r.LogicalResourceId) == "" {
				d.unnamed++
				continue
			}
			d.resources[aws.ToString(r.LogicalResourceId)] = r
		}
	}
}

// waitStack polls DescribeStacks until the stack leaves its *_IN_PROGRESS
// state or ctx ends, and returns it if it reached want.
func (d *deployment) waitStack(ctx context.Context, id, want string) (cftypes.Stack, error) {
	for {
		out, err := d.cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(id)})
		if err != nil {
			return cftypes.Stack{}, fmt.Errorf("describe stack %s: %w", id, err)
		}
		if len(out.Stacks) != 1 {
			return cftypes.Stack{}, fmt.Errorf("describe stack %s: %d stacks", id, len(out.Stacks))
		}
		s := out.Stacks[0]
		status := string(s.StackStatus)
		switch {
		case status == want:
			return s, nil
		case !strings.HasSuffix(status, "_IN_PROGRESS"):
			return s, fmt.Errorf("stack %s is %s, want %s: %s", id, status, want, aws.ToString(s.StackStatusReason))
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("stack %s still %s: %w", id, status, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// events renders the stack's events, for a failed deployment.
func (d *deployment) events(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := d.cf.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(id)})
	if err != nil {
		return fmt.Sprintf("(stack events: %v)", err)
	}
	var b strings.Builder
	b.WriteString("stack events, newest first:\n")
	for _, e := range out.StackEvents {
		fmt.Fprintf(&b, "  %s %s %s %s\n", aws.ToString(e.LogicalResourceId), aws.ToString(e.ResourceType), e.ResourceStatus, aws.ToString(e.ResourceStatusReason))
	}
	return b.String()
}

// cleanup deletes the stack (again, if the test has), and the table it
// retains. Errors are the test's only for a stack CreateStack accepted.
func (d *deployment) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	table := aws.ToString(d.resources["StateTable"].PhysicalResourceId)
	if table == "" {
		res, err := d.cf.DescribeStackResource(ctx, &cloudformation.DescribeStackResourceInput{StackName: aws.String(d.stack), LogicalResourceId: aws.String("StateTable")})
		if err == nil && res.StackResourceDetail != nil {
			table = aws.ToString(res.StackResourceDetail.PhysicalResourceId)
		}
	}
	if _, err := d.cf.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(d.stack)}); err != nil && d.created {
		d.t.Errorf("delete stack %s: %v", d.stack, err)
	}
	if table != "" {
		_, err := d.ddb.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
		var nf *ddbtypes.ResourceNotFoundException
		if err != nil && !errors.As(err, &nf) {
			d.t.Errorf("delete the retained table %s: %v", table, err)
		}
	}
}

// physical returns a built resource's physical ID.
func (d *deployment) physical(t *testing.T, logical string) string {
	t.Helper()
	r, ok := d.resources[logical]
	if !ok || aws.ToString(r.PhysicalResourceId) == "" {
		t.Fatalf("moto did not create %s (or gave it no physical ID)", logical)
	}
	return aws.ToString(r.PhysicalResourceId)
}

// templateProp returns the value at path in the Properties of the template
// resource logical (what CreateStack got), or nil.
func (d *deployment) templateProp(logical string, path ...string) any {
	var v any = d.template["Resources"].(map[string]any)[logical]
	for _, p := range append([]string{"Properties"}, path...) {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// checkResources checks that moto built every resource of the template
// except those of the types it does not implement, and logs those.
func (d *deployment) checkResources(t *testing.T) {
	resources := d.template["Resources"].(map[string]any)
	var unbuilt []string
	for _, logical := range sortedKeys(resources) {
		typ, _ := resources[logical].(map[string]any)["Type"].(string)
		r, built := d.resources[logical]
		switch {
		case built && aws.ToString(r.ResourceType) != typ:
			t.Errorf("%s is a %s in moto, want %s", logical, aws.ToString(r.ResourceType), typ)
		case built && r.ResourceStatus != cftypes.ResourceStatusCreateComplete:
			t.Errorf("%s is %s", logical, r.ResourceStatus)
		case !built && !motoUnbuilt[typ]:
			t.Errorf("moto did not create %s (%s)", logical, typ)
		case !built:
			unbuilt = append(unbuilt, logical+" ("+typ+")")
		}
	}
	if d.unnamed != len(unbuilt) {
		t.Errorf("ListStackResources has %d rows without a logical ID, want one per resource moto did not build (%d)", d.unnamed, len(unbuilt))
	}
	t.Logf("accepted by moto's CloudFormation but not built (%d of %d resources): %s", len(unbuilt), len(resources), strings.Join(unbuilt, ", "))
}

// checkTable checks the table moto's CloudFormation created, in moto's own
// DynamoDB.
func (d *deployment) checkTable(t *testing.T) {
	table := d.physical(t, "StateTable")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := d.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatalf("describe table %s in moto: %v", table, err)
	}
	tb := out.Table
	if len(tb.KeySchema) != 1 || aws.ToString(tb.KeySchema[0].AttributeName) != "pk" || tb.KeySchema[0].KeyType != ddbtypes.KeyTypeHash {
		t.Errorf("key schema %+v, want pk HASH only", tb.KeySchema)
	}
	if len(tb.AttributeDefinitions) != 1 || aws.ToString(tb.AttributeDefinitions[0].AttributeName) != "pk" || tb.AttributeDefinitions[0].AttributeType != ddbtypes.ScalarAttributeTypeS {
		t.Errorf("attribute definitions %+v, want pk S only", tb.AttributeDefinitions)
	}
	if tb.BillingModeSummary == nil || tb.BillingModeSummary.BillingMode != ddbtypes.BillingModePayPerRequest {
		t.Errorf("billing mode %+v, want PAY_PER_REQUEST", tb.BillingModeSummary)
	}
	ttl, err := d.ddb.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatalf("describe time to live of %s: %v", table, err)
	}
	want := map[string]any{"AttributeName": "ttl", "Enabled": true}
	switch desc := ttl.TimeToLiveDescription; {
	case desc != nil && desc.TimeToLiveStatus == ddbtypes.TimeToLiveStatusEnabled:
		if aws.ToString(desc.AttributeName) != "ttl" {
			t.Errorf("TTL attribute %q, want ttl", aws.ToString(desc.AttributeName))
		}
	case !reflect.DeepEqual(d.templateProp("StateTable", "TimeToLiveSpecification"), want):
		t.Errorf("TimeToLiveSpecification %v in the template, want %v", d.templateProp("StateTable", "TimeToLiveSpecification"), want)
	default:
		t.Logf("moto ignores TimeToLiveSpecification (DescribeTimeToLive: %+v); checked in the template: %v", desc, want)
	}
	if tb.SSEDescription == nil {
		if sse := d.templateProp("StateTable", "SSESpecification", "SSEEnabled"); sse != true {
			t.Errorf("SSESpecification.SSEEnabled %v in the template, want true", sse)
		} else {
			t.Logf("moto ignores SSESpecification (DescribeTable has no SSEDescription); checked in the template")
		}
	}
	if policy := d.template["Resources"].(map[string]any)["StateTable"].(map[string]any)["DeletionPolicy"]; policy != "Retain" {
		t.Errorf("StateTable DeletionPolicy %v, want Retain", policy)
	}
}

// checkFunction checks a deployed function's configuration and returns it.
func (d *deployment) checkFunction(t *testing.T, logical, logGroup, role string, timeout time.Duration) *lambda.GetFunctionConfigurationOutput {
	t.Helper()
	var fn *lambda.GetFunctionConfigurationOutput
	t.Run(logical, func(t *testing.T) {
		name := d.physical(t, logical)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		fn, err = d.lam.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err != nil {
			t.Fatalf("get function configuration of %s: %v", name, err)
		}
		if h := aws.ToString(fn.Handler); h != "bootstrap" {
			t.Errorf("handler %q, want bootstrap", h)
		}
		if fn.Runtime != lambdatypes.RuntimeProvidedal2023 {
			t.Errorf("runtime %q, want provided.al2023", fn.Runtime)
		}
		if got := time.Duration(aws.ToInt32(fn.Timeout)) * time.Second; got != timeout {
			t.Errorf("timeout %v, want %v", got, timeout)
		}
		if m := aws.ToInt32(fn.MemorySize); m != 128 {
			t.Errorf("memory %d MB, want 128", m)
		}
		if sha := aws.ToString(fn.CodeSha256); sha != d.codeSHA[logical] {
			t.Errorf("code SHA-256 %s, want %s (the zip uploaded for %s)", sha, d.codeSHA[logical], logical)
		}
		if fn.VpcConfig != nil && len(fn.VpcConfig.SubnetIds) > 0 {
			t.Errorf("VPC config %+v, want none (SubnetIds is empty)", fn.VpcConfig)
		}
		roleOut, err := d.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(d.physical(t, role))})
		if err != nil {
			t.Fatalf("get role %s: %v", role, err)
		}
		if aws.ToString(fn.Role) != aws.ToString(roleOut.Role.Arn) {
			t.Errorf("role %s, want %s's ARN %s", aws.ToString(fn.Role), role, aws.ToString(roleOut.Role.Arn))
		}

		archs := make([]string, len(fn.Architectures))
		for i, a := range fn.Architectures {
			archs[i] = string(a)
		}
		switch tplArchs := d.templateProp(logical, "Architectures"); {
		case slices.Equal(archs, []string{"arm64"}):
		case !reflect.DeepEqual(tplArchs, []any{"arm64"}):
			t.Errorf("architectures %v in the template, want [arm64]", tplArchs)
		case slices.Equal(archs, []string{"x86_64"}):
			t.Logf("moto ignores Architectures (GetFunctionConfiguration: %v, its default); checked in the template: [arm64]", archs)
		default:
			t.Errorf("architectures %v, want [arm64]", archs)
		}

		groupName := d.physical(t, logGroup)
		switch tplGroup := d.templateProp(logical, "LoggingConfig", "LogGroup"); {
		case fn.LoggingConfig != nil:
			if g := aws.ToString(fn.LoggingConfig.LogGroup); g != groupName {
				t.Errorf("log group %q, want %q", g, groupName)
			}
		case !reflect.DeepEqual(tplGroup, map[string]any{"Ref": logGroup}):
			t.Errorf("LoggingConfig.LogGroup %v in the template, want a Ref to %s", tplGroup, logGroup)
		default:
			t.Logf("moto ignores LoggingConfig (GetFunctionConfiguration has none); checked in the template: LogGroup = Ref %s (%s)", logGroup, groupName)
		}

		want := map[string]string{
			config.EnvTable:           d.physical(t, "StateTable"),
			config.EnvParameterPrefix: d.prefix,
			config.EnvKMSKeyID:        "alias/aws/ssm",
			config.EnvLeaseSeconds:    "60",
			config.EnvService:         d.stack,
			config.EnvLogLevel:        d.params["LogLevel"],
		}
		if logical == "ScheduledRefreshFunction" {
			want[config.EnvConcurrency] = d.params["RefreshConcurrency"]
		}
		var got map[string]string
		if fn.Environment != nil {
			got = fn.Environment.Variables
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("environment\n got %v\nwant %v", got, want)
		}

		rc, err := d.lam.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String(name)})
		if err != nil {
			t.Fatalf("get function concurrency of %s: %v", name, err)
		}
		if rc.ReservedConcurrentExecutions != nil {
			t.Errorf("reserved concurrency %d, want none (ApiReservedConcurrency 0)", aws.ToInt32(rc.ReservedConcurrentExecutions))
		}
	})
	if fn == nil {
		t.FailNow()
	}
	return fn
}

// checkSchedule checks the EventBridge rule that runs the scheduled function
// and the permission that lets it.
func (d *deployment) checkSchedule(t *testing.T, fn *lambda.GetFunctionConfigurationOutput) {
	rule := d.physical(t, "ScheduledRefreshFunctionSchedule")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rules, err := d.ev.ListRules(ctx, &eventbridge.ListRulesInput{NamePrefix: aws.String(rule)})
	if err != nil {
		t.Fatalf("list rules: %v", err)
	}
	if len(rules.Rules) != 1 {
		t.Fatalf("%d rules named %s, want 1", len(rules.Rules), rule)
	}
	r := rules.Rules[0]
	if aws.ToString(r.ScheduleExpression) != "rate(1 minute)" || r.State != "ENABLED" {
		t.Errorf("rule %s: schedule %q, state %s; want rate(1 minute), ENABLED", rule, aws.ToString(r.ScheduleExpression), r.State)
	}
	targets, err := d.ev.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(rule)})
	if err != nil {
		t.Fatalf("list targets of %s: %v", rule, err)
	}
	if len(targets.Targets) != 1 {
		t.Fatalf("rule %s has %d targets, want 1", rule, len(targets.Targets))
	}
	tg := targets.Targets[0]
	if aws.ToString(tg.Arn) != aws.ToString(fn.FunctionArn) {
		t.Errorf("rule target %s, want the scheduled function %s", aws.ToString(tg.Arn), aws.ToString(fn.FunctionArn))
	}
	if rp := tg.RetryPolicy; rp == nil || aws.ToInt32(rp.MaximumRetryAttempts) != 0 || aws.ToInt32(rp.MaximumEventAgeInSeconds) != 60 {
		t.Errorf("target retry policy %+v, want no retries, events at most 60 s old", rp)
	}

	pol, err := d.lam.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: fn.FunctionName})
	if err != nil {
		t.Fatalf("get the resource policy of %s: %v", aws.ToString(fn.FunctionName), err)
	}
	var doc struct {
		Statement []struct {
			Action    string
			Principal struct{ Service string }
			Condition struct {
				ArnLike map[string]string
			}
		}
	}
	if err := json.Unmarshal([]byte(aws.ToString(pol.Policy)), &doc); err != nil {
		t.Fatalf("resource policy %s: %v", aws.ToString(pol.Policy), err)
	}
	ok := false
	for _, s := range doc.Statement {
		ok = ok || (s.Action == "lambda:InvokeFunction" && s.Principal.Service == "events.amazonaws.com" && s.Condition.ArnLike["AWS:SourceArn"] == aws.ToString(r.Arn))
	}
	if !ok {
		t.Errorf("no statement lets the rule %s invoke the function: %s", aws.ToString(r.Arn), aws.ToString(pol.Policy))
	}
}

// checkLogGroups checks the stack's three log groups.
func (d *deployment) checkLogGroups(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := "/wxtoken/" + d.stack + "/"
	out, err := d.logs.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String(base)})
	if err != nil {
		t.Fatalf("describe log groups: %v", err)
	}
	got := map[string]int32{}
	for _, g := range out.LogGroups {
		got[aws.ToString(g.LogGroupName)] = aws.ToInt32(g.RetentionInDays)
	}
	want := map[string]int32{base + "scheduled-refresh": 30, base + "refresh-api": 30, base + "api-access": 30}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("log groups (name: retention days) %v, want %v", got, want)
	}
	for logical, name := range map[string]string{"ScheduledRefreshLogGroup": "scheduled-refresh", "RefreshApiLogGroup": "refresh-api", "ApiAccessLogGroup": "api-access"} {
		if p := d.physical(t, logical); p != base+name {
			t.Errorf("%s is %s, want %s", logical, p, base+name)
		}
	}
}

// policyDoc is an IAM policy document as IAM returns it.
type policyDoc struct {
	Statement []struct {
		Sid       string
		Effect    string
		Action    stringList
		Resource  stringList
		Condition map[string]map[string]any
	}
}

// stringList is a policy element that is a string or a list of strings.
type stringList []string

// UnmarshalJSON implements json.Unmarshaler.
func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("policy element %s: %w", b, err)
	}
	*l = many
	return nil
}

// decodePolicy decodes a policy document IAM returned: URL-encoded JSON in
// IAM's API, plain JSON from moto's GetPolicyVersion, and from moto's
// GetRolePolicy, for a role CloudFormation created, the Python repr of the
// document ({'Statement': [{'Action': ...}]}). The repr is read by turning
// its single quotes into double ones, which is exact for wxtoken's policies
// (no quote, True, False or None in them).
func decodePolicy(raw string) (policyDoc, error) {
	var doc policyDoc
	if strings.HasPrefix(raw, "%") {
		u, err := url.QueryUnescape(raw)
		if err != nil {
			return doc, fmt.Errorf("policy document: %w", err)
		}
		raw = u
	}
	if strings.HasPrefix(raw, "{'") {
		raw = strings.ReplaceAll(raw, "'", `"`)
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return doc, fmt.Errorf("policy document %s: %w", raw, err)
	}
	return doc, nil
}

// checkRoles checks the functions' inline policies: each reaches the
// deployed table and the deployed prefix, and only the scheduled one scans.
func (d *deployment) checkRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tbl, err := d.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(d.physical(t, "StateTable"))})
	if err != nil {
		t.Fatalf("describe table: %v", err)
	}
	tableArn := aws.ToString(tbl.Table.TableArn)
	for _, r := range []struct{ role, policy, group string }{
		{"ScheduledRefreshRole", "wxtoken-scheduled-refresh", "ScheduledRefreshLogGroup"},
		{"RefreshApiRole", "wxtoken-refresh-api", "RefreshApiLogGroup"},
	} {
		out, err := d.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(d.physical(t, r.role)), PolicyName: aws.String(r.policy)})
		if err != nil {
			t.Errorf("get %s's policy %s: %v", r.role, r.policy, err)
			continue
		}
		doc, err := decodePolicy(aws.ToString(out.PolicyDocument))
		if err != nil {
			t.Error(err)
			continue
		}
		sids := map[string]bool{}
		for _, s := range doc.Statement {
			sids[s.Sid] = true
			switch s.Sid {
			case "StateTable":
				scan := slices.Contains(s.Action, "dynamodb:Scan")
				if !slices.Equal(s.Resource, []string{tableArn}) || scan != (r.role == "ScheduledRefreshRole") {
					t.Errorf("%s StateTable statement: actions %v on %v; want the table %s, with Scan only for the scheduled function", r.role, s.Action, s.Resource, tableArn)
				}
			case "WriteStateOnly":
				keys := fmt.Sprint(s.Condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
				if !slices.Equal(s.Action, []string{"dynamodb:UpdateItem"}) || !slices.Equal(s.Resource, []string{tableArn}) || keys != "[state#*]" {
					t.Errorf("%s WriteStateOnly statement: actions %v on %v; want UpdateItem on the table %s (state# items only)", r.role, s.Action, s.Resource, tableArn)
				}
			case "PublishTokens", "ReadSecretsAndTokens":
				for _, res := range s.Resource {
					if !strings.Contains(res, ":parameter"+d.prefix+"/*/") {
						t.Errorf("%s %s resource %s is not under the deployed prefix %s", r.role, s.Sid, res, d.prefix)
					}
				}
			case "Logs":
				if len(s.Resource) != 1 || !strings.Contains(s.Resource[0], ":log-group:"+d.physical(t, r.group)) {
					t.Errorf("%s Logs statement on %v, want the function's own log group %s", r.role, s.Resource, d.physical(t, r.group))
				}
			}
		}
		if len(doc.Statement) != 5 || !sids["StateTable"] || !sids["WriteStateOnly"] || !sids["Logs"] || !sids["PublishTokens"] || !sids["ReadSecretsAndTokens"] {
			t.Errorf("%s statements %v, want Logs, StateTable, WriteStateOnly, ReadSecretsAndTokens, PublishTokens (no KMS or VPC statement without KmsKeyArn and SubnetIds)", r.role, sids)
		}
	}
}

// checkConsumerPolicy checks the managed policy business servers attach.
func (d *deployment) checkConsumerPolicy(t *testing.T) {
	arn := d.physical(t, "ConsumerPolicy")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := d.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	if err != nil {
		t.Fatalf("get policy %s: %v", arn, err)
	}
	v, err := d.iam.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(arn), VersionId: p.Policy.DefaultVersionId})
	if err != nil {
		t.Fatalf("get policy version %s %s: %v", arn, aws.ToString(p.Policy.DefaultVersionId), err)
	}
	doc, err := decodePolicy(aws.ToString(v.PolicyVersion.Document))
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string][]string{}
	for _, s := range doc.Statement {
		if s.Effect != "Allow" {
			t.Errorf("statement %s has effect %s", s.Sid, s.Effect)
		}
		for _, a := range s.Action {
			actions[a] = append(actions[a], s.Resource...)
		}
		for _, res := range s.Resource {
			if strings.Contains(res, "force-refresh") {
				t.Errorf("the consumer policy grants the force-refresh route: %s", res)
			}
		}
	}
	if len(actions) != 3 {
		t.Errorf("actions %v, want ssm:GetParameter, ssm:GetParameters and execute-api:Invoke only", sortedKeys(actions))
	}
	region := d.cfg.Region
	// The published token and tickets (pkg/registry's leaves) and their
	// rotation meta (pkg/rotation), nothing else; a consumer reads a
	// credential with its meta in one GetParameters.
	leaves := []string{registry.TokenLeaf, registry.TicketJSAPI.ParameterLeaf(), registry.TicketCard.ParameterLeaf(), registry.TicketAgentConfig.ParameterLeaf()}
	for _, l := range leaves[:4] {
		leaves = append(leaves, rotation.Name(l))
	}
	for _, action := range []string{"ssm:GetParameter", "ssm:GetParameters"} {
		ssmRes := actions[action]
		want := leaves
		if action == "ssm:GetParameter" {
			want = leaves[:4] // the schedule is read with its credential only
		}
		ok := len(ssmRes) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = strings.HasPrefix(ssmRes[i], "arn:aws:ssm:"+region+":") && strings.HasSuffix(ssmRes[i], ":parameter"+d.prefix+"/*/"+want[i])
		}
		if !ok {
			t.Errorf("%s on %v, want %v under %s only", action, ssmRes, want, d.prefix)
		}
	}
	api := actions["execute-api:Invoke"]
	if len(api) != 2 || !strings.HasSuffix(api[0], "/*/POST/v1/apps/*/refresh") || !strings.HasSuffix(api[1], "/*/GET/v1/apps/*") {
		t.Errorf("execute-api:Invoke on %v, want the refresh and status routes", api)
	}
	for _, res := range api {
		if strings.Contains(res, "${Api}") {
			t.Logf("moto does not build the HTTP API, so ${Api} stays unresolved in %s", res)
		}
	}
}

// checkOutputs checks the stack's outputs against the resources.
func (d *deployment) checkOutputs(t *testing.T) {
	want := map[string]string{
		"TableName":                    d.physical(t, "StateTable"),
		"ParameterPrefix":              d.prefix,
		"ConsumerPolicyArn":            d.physical(t, "ConsumerPolicy"),
		"ScheduledRefreshFunctionName": d.physical(t, "ScheduledRefreshFunction"),
		"RefreshApiFunctionName":       d.physical(t, "RefreshApiFunction"),
	}
	got := map[string]string{}
	for k, v := range d.outputs {
		if k != "ApiUrl" {
			got[k] = v
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outputs\n got %v\nwant %v", got, want)
	}
	apiURL, ok := d.outputs["ApiUrl"]
	if !ok || !strings.HasPrefix(apiURL, "https://") || !strings.HasSuffix(apiURL, ".execute-api."+d.cfg.Region+".amazonaws.com") {
		t.Errorf("ApiUrl %q, want https://<api id>.execute-api.%s.amazonaws.com", apiURL, d.cfg.Region)
	}
	if strings.Contains(apiURL, "${Api}") {
		t.Logf("moto does not build the HTTP API: ApiUrl is %s", apiURL)
	}
}

// run runs both binaries with the environment read back from the deployed
// functions, against the deployed table in moto's DynamoDB and the deployed
// prefix in moto's SSM, and the WeChat sandbox.
func (d *deployment) run(t *testing.T, bins map[string]string, schedFn, apiFn *lambda.GetFunctionConfigurationOutput) {
	table := d.physical(t, "StateTable")
	sb := wechattest.NewServer(wechattest.Config{})
	t.Cleanup(sb.Close)
	sb.AddApp(wechattest.App{AppID: appID, Secret: secret, Kind: wechattest.OfficialAccount})
	s := &stack{t: t, sb: sb, store: tokenstore.New(d.ssm, d.prefix, "")}

	// Register the app in the deployed table and prefix.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.ssm.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(d.prefix + "/demo/secret"), Value: aws.String(secret),
		Type: ssmtypes.ParameterTypeSecureString,
	}); err != nil {
		t.Fatalf("put secret: %v", err)
	}
	app := registry.App{Name: "demo", AppID: appID, Kind: registry.OfficialAccount, Mode: registry.Stable}
	if _, err := d.ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: registry.Item(app)}); err != nil {
		t.Fatalf("register demo in %s: %v", table, err)
	}

	rt := lambdatest.NewRuntime()
	t.Cleanup(rt.Close)
	sched := rt.Start(t, bins["ScheduledRefreshFunction"], d.processEnv(awscalls.Scheduled, schedFn, sb.URL)...)
	art := lambdatest.NewRuntime()
	t.Cleanup(art.Close)
	apiProc := art.Start(t, bins["RefreshApiFunction"], d.processEnv(awscalls.API, apiFn, sb.URL)...)

	var first string
	t.Run("schedule publishes a token", func(t *testing.T) {
		res := invokeLive(t, rt, sched, event(t, "schedule.json"), scheduledTimeout)
		if res.Error != nil {
			t.Fatalf("function error: %v\n%s", res.Error, sched.Output())
		}
		var summary struct {
			Apps   int            `json:"apps"`
			Counts map[string]int `json:"counts"`
		}
		if err := json.Unmarshal(res.Payload, &summary); err != nil {
			t.Fatalf("summary %s: %v", res.Payload, err)
		}
		if summary.Apps != 1 || summary.Counts["refreshed"] != 1 {
			t.Fatalf("summary %s, want one app refreshed\n%s", res.Payload, sched.Output())
		}
		tok, v := s.published(t)
		if v != 1 || sb.Check(tok) != 0 {
			t.Errorf("published version %d at %s/demo/access_token, sandbox check errcode %d; want version 1 and a token WeChat accepts", v, d.prefix, sb.Check(tok))
		}
		first = tok
	})
	if first == "" {
		t.FailNow()
	}

	steps := []struct {
		file   string
		status int
		check  func(t *testing.T, body map[string]any, headers map[string]string)
	}{
		{"api-refresh.json", 200, func(t *testing.T, body map[string]any, _ map[string]string) {
			if body["access_token"] != first || body["refreshed"] != true || body["version"] != float64(1) {
				t.Errorf("body %v, want the published token, version 1, refreshed", body)
			}
		}},
		{"api-status.json", 200, func(t *testing.T, body map[string]any, _ map[string]string) {
			if body["published"] != true || body["version"] != float64(1) || body["generation"] != float64(1) || body["access_token"] != nil {
				t.Errorf("status %v, want published version 1, generation 1, no token", body)
			}
		}},
		{"api-force-refresh.json", 200, func(t *testing.T, body map[string]any, _ map[string]string) {
			tok, v := s.published(t)
			if body["access_token"] != tok || tok == first || v != 2 || sb.Check(tok) != 0 {
				t.Errorf("force-refresh answered version %v; SSM holds version %d; want a new token, version 2, published and valid", body["version"], v)
			}
		}},
		{"api-force-refresh.json", 429, func(t *testing.T, body map[string]any, headers map[string]string) {
			tok, _ := s.published(t)
			e, _ := body["error"].(map[string]any)
			if e["code"] != "refresh_refused" || body["access_token"] != tok || headers["Retry-After"] == "" {
				t.Errorf("answer %v (Retry-After %q), want refresh_refused with the current token and Retry-After", e, headers["Retry-After"])
			}
		}},
		{"api-status-unknown-app.json", 404, nil},
	}
	for _, st := range steps {
		t.Run(st.file, func(t *testing.T) {
			ans, body := decodeAnswer(t, invokeLive(t, art, apiProc, event(t, st.file), apiTimeout), apiProc)
			if ans.StatusCode != st.status {
				t.Fatalf("status %d, want %d: %s\n%s", ans.StatusCode, st.status, ans.Body, apiProc.Output())
			}
			if st.check != nil {
				st.check(t, body, ans.Headers)
			}
		})
	}
	if n := sb.TokenCalls(appID); n != 2 {
		t.Errorf("WeChat token calls = %d, want 2 (the schedule's and the forced one)", n)
	}

	t.Run("state is in the deployed table", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := d.ddb.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "state#demo"}},
		})
		if err != nil || out.Item == nil {
			t.Fatalf("the app's state is not in moto's %s: %v", table, err)
		}
		if g, ok := out.Item["generation"].(*ddbtypes.AttributeValueMemberN); !ok || g.Value != "2" {
			t.Errorf("state generation %v, want 2", out.Item["generation"])
		}
		// DynamoDB Local (the test bed's other DynamoDB) has no such table:
		// the functions used the deployed one. (ListTables rather than a
		// DescribeTable that fails: DynamoDB Local's error answers carry an
		// x-amz-crc32 the SDK warns about.)
		pages := dynamodb.NewListTablesPaginator(dynamodb.NewFromConfig(d.cfg), &dynamodb.ListTablesInput{})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				t.Fatalf("list DynamoDB Local's tables: %v", err)
			}
			if slices.Contains(page.TableNames, table) {
				t.Errorf("DynamoDB Local has a table %s; want it only in moto", table)
			}
		}
	})
	t.Run("the operator command reads the stack", func(t *testing.T) { d.operatorCommand(t, 2) })
	t.Run("no token or secret in any output", func(t *testing.T) {
		s.t = t
		s.noSecrets("scheduled-refresh", sched.Output())
		s.noSecrets("refresh-api", apiProc.Output())
	})
}

// invokeLive is invoke, but gives up as soon as the process ends (a failed
// cold start, say) instead of waiting out the function's timeout, and then
// reports the init error.
func invokeLive(t *testing.T, rt *lambdatest.Runtime, proc *lambdatest.Process, payload []byte, timeout time.Duration) lambdatest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-proc.Exited():
			cancel()
		case <-ctx.Done():
		}
	}()
	res, err := rt.Invoke(ctx, payload)
	if err != nil {
		t.Fatalf("invoke: %v (init error: %v)\nprocess output:\n%s", err, rt.InitError(), proc.Output())
	}
	return res
}

// processEnv is what a function process gets: every WXTOKEN_ variable
// cleared, then the environment read back from the deployed function, then
// only what running locally needs (region, dummy credentials, moto as the
// DynamoDB and SSM endpoint, the WeChat sandbox).
func (d *deployment) processEnv(id awscalls.Identity, fn *lambda.GetFunctionConfigurationOutput, sandbox string) []string {
	var env []string
	for _, k := range []string{config.EnvTable, config.EnvParameterPrefix, config.EnvKMSKeyID, config.EnvLeaseSeconds,
		config.EnvConcurrency, config.EnvLogLevel, config.EnvService, config.EnvWeChatBaseURLs, config.EnvWeComBaseURLs} {
		env = append(env, k+"=")
	}
	if fn.Environment != nil {
		for _, k := range sortedKeys(fn.Environment.Variables) {
			env = append(env, k+"="+fn.Environment.Variables[k])
		}
	}
	return append(env,
		"AWS_REGION="+d.cfg.Region,
		// Signed as the function, so the test bed records its calls for
		// the IAM check (pkg/testsupport/awscalls).
		"AWS_ACCESS_KEY_ID="+string(id),
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_SESSION_TOKEN=",
		"AWS_ENDPOINT_URL_DYNAMODB="+d.motoURL,
		"AWS_ENDPOINT_URL_SSM="+d.motoURL,
		"AWS_ENDPOINT_URL_KMS="+d.motoURL,
		config.EnvWeChatBaseURLs+"="+sandbox,
		config.EnvWeComBaseURLs+"="+sandbox,
	)
}

// deleteStack deletes the stack and checks that the table, and only the
// table, outlives it (DeletionPolicy Retain).
func (d *deployment) deleteStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stacks, err := d.cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(d.stack)})
	if err != nil || len(stacks.Stacks) != 1 {
		t.Fatalf("describe stack %s: %v", d.stack, err)
	}
	id := aws.ToString(stacks.Stacks[0].StackId)
	if _, err := d.cf.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(d.stack)}); err != nil {
		t.Fatalf("delete stack %s: %v", d.stack, err)
	}
	if _, err := d.waitStack(ctx, id, "DELETE_COMPLETE"); err != nil {
		t.Fatalf("%v\n%s", err, d.events(id))
	}
	if _, err := d.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(d.physical(t, "StateTable"))}); err != nil {
		t.Errorf("the table is gone with the stack (DeletionPolicy Retain): %v", err)
	}
	groups, err := d.logs.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String("/wxtoken/" + d.stack + "/")})
	if err != nil {
		t.Fatalf("describe log groups: %v", err)
	}
	if len(groups.LogGroups) != 0 {
		t.Errorf("%d log groups outlive the stack, want none (DeletionPolicy Delete)", len(groups.LogGroups))
	}
	for _, fn := range []string{"ScheduledRefreshFunction", "RefreshApiFunction"} {
		_, err := d.lam.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(d.physical(t, fn))})
		var nf *lambdatypes.ResourceNotFoundException
		if !errors.As(err, &nf) {
			t.Errorf("%s outlives the stack: %v", fn, err)
		}
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
