package lambdatest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
	"github.com/wxtoken/wxtoken/pkg/testsupport/syncbuf"
)

// Build compiles the main package pkg (an import path or a ./relative path)
// for the machine running the test, with the same build tag the Lambda build
// uses (lambda.norpc), and returns the path of the `bootstrap` binary in a
// temporary directory. It fails tb when the build fails.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "bootstrap")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("lambdatest: go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// Process is a function binary running against a Runtime.
type Process struct {
	cmd    *exec.Cmd
	output syncbuf.Buffer
	exited chan struct{}
	err    error
}

// Start runs the binary at path with the runtime's AWS_LAMBDA_RUNTIME_API and
// the extra environment env (KEY=VALUE, appended to the test's own). The
// process is killed when the test ends.
func (r *Runtime) Start(tb testing.TB, path string, env ...string) *Process {
	tb.Helper()
	p := &Process{exited: make(chan struct{})}
	p.cmd = exec.Command(path)
	p.cmd.Env = append(append(os.Environ(), r.Env()), env...)
	out := io.MultiWriter(&p.output, leakscan.Sink(tb, filepath.Base(filepath.Dir(path))))
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("lambdatest: start %s: %v", path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// Output returns what the process has written to stdout and stderr so far.
func (p *Process) Output() string { return p.output.String() }

// Exited returns a channel closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait waits for the process to end or ctx to be done, and returns the
// process's exit error (nil for status 0) or ctx's error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
