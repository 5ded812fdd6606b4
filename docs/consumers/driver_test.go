package consumers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/syncbuf"
)

// childEnv is the environment of a consumer program the tests run: this
// process's (the test bed's AWS_ENDPOINT_URL_* among it) without a profile,
// config files or inherited module paths, with the stack's credentials and
// region, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "AWS_PROFILE", "PYTHONPATH", "NODE_PATH", "JAVA_TOOL_OPTIONS":
		default:
			env = append(env, kv)
		}
	}
	env = append(env,
		"AWS_ACCESS_KEY_ID="+stacktest.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+stacktest.SecretAccessKey,
		"AWS_SESSION_TOKEN=", "AWS_REGION="+stacktest.Region, "AWS_DEFAULT_REGION="+stacktest.Region,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "PYTHONDONTWRITEBYTECODE=1")
	return append(env, extra...)
}

// driver is a consumer program the test talks to one line at a time: a
// command on its stdin, one JSON line back on its stdout (the test's own
// channel: values may be tokens, so failures print fingerprints only).
type driver struct {
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncbuf.Buffer
	wait   time.Duration
}

// startDriver runs argv in dir ("" for this folder) with env; it answers
// each command within wait. When t ends it is sent "quit" and given 10 s
// to exit.
func startDriver(t *testing.T, dir string, env []string, wait time.Duration, argv ...string) *driver {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = dir, env
	d := &driver{lines: make(chan string), stderr: &syncbuf.Buffer{}, wait: wait}
	cmd.Stderr = d.stderr
	var err error
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(d.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_, _ = io.WriteString(d.stdin, "quit\n")
		_ = d.stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not exit after quit\nstderr:\n%s", argv[0], d.stderr)
		}
		cancel()
	})
	return d
}

// send writes cmd and decodes the line the program answers into v.
func (d *driver) send(cmd string, v any) error {
	if _, err := io.WriteString(d.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("%s: %w\nstderr:\n%s", cmd, err, d.stderr)
	}
	select {
	case line, ok := <-d.lines:
		if !ok {
			return fmt.Errorf("%s: the program ended\nstderr:\n%s", cmd, d.stderr)
		}
		if err := json.Unmarshal([]byte(line), v); err != nil {
			return fmt.Errorf("%s: answer of %d bytes: %w", cmd, len(line), err)
		}
		return nil
	case <-time.After(d.wait):
		return fmt.Errorf("%s: no answer in %v\nstderr:\n%s", cmd, d.wait, d.stderr)
	}
}

// do is send, failing t on error.
func (d *driver) do(t *testing.T, cmd string, v any) {
	t.Helper()
	if err := d.send(cmd, v); err != nil {
		t.Fatal(err)
	}
}

// writeMeta writes the rotation meta of app's token as value, as the
// refresher publishes it ("" deletes it), so that a test can stage any
// schedule, a malformed one included.
func writeMeta(t *testing.T, st *stacktest.Stack, app, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	params := ssm.NewFromConfig(st.Cfg)
	name := rotation.Name(st.Prefix + "/" + app + "/access_token")
	var err error
	if value == "" {
		_, err = params.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(name)})
		var missing *ssmtypes.ParameterNotFound
		if errors.As(err, &missing) {
			err = nil
		}
	} else {
		_, err = params.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value),
			Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)})
	}
	if err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
}
