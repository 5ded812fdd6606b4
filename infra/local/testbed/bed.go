package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/wxtoken/wxtoken/pkg/testsupport/awscalls"
)

// config says where the engines are installed and how to run them.
type config struct {
	dynamoDir    string
	java         string
	moto         string
	logDir       string
	region       string
	startTimeout time.Duration
	// calls, when set, puts a recording proxy in front of each engine and
	// names the file the recorded calls are written to (see record.go).
	calls string
}

// engine is one running emulator process.
type engine struct {
	name    string
	url     string
	proxy   *recordingProxy // nil unless calls are recorded
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been reaped
	waitErr error         // valid once exited is closed
}

// bed is the set of running engines.
type bed struct {
	engines   []*engine
	logDir    string
	ownLogDir bool // logDir is a temporary directory of ours
	region    string
	died      chan error         // receives one error when an engine exits on its own
	recorder  *awscalls.Recorder // nil unless calls are recorded
	stopping  chan struct{}
	stopOnce  sync.Once
}

// start launches DynamoDB Local and moto server and waits until both answer
// HTTP. On error, whatever was started is stopped again.
func start(ctx context.Context, cfg config) (*bed, error) {
	if err := checkInstalled(cfg); err != nil {
		return nil, err
	}
	// Engines run in the log directory, so their paths must not be relative.
	dynamoDir, err := filepath.Abs(cfg.dynamoDir)
	if err != nil {
		return nil, fmt.Errorf("DynamoDB Local directory: %w", err)
	}
	moto, err := filepath.Abs(cfg.moto)
	if err != nil {
		return nil, fmt.Errorf("moto server path: %w", err)
	}
	logDir := cfg.logDir
	if logDir == "" {
		d, err := os.MkdirTemp("", "wxtoken-testbed-")
		if err != nil {
			return nil, fmt.Errorf("create log directory: %w", err)
		}
		logDir = d
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	b := &bed{logDir: logDir, ownLogDir: cfg.logDir == "", region: cfg.region, died: make(chan error, 2), stopping: make(chan struct{})}

	specs := []struct {
		name string
		argv func(port int) []string
	}{
		{"DynamoDB Local", func(port int) []string {
			return []string{cfg.java,
				"-Djava.library.path=" + dynamoDir,
				"-cp", filepath.Join(dynamoDir, "*"),
				"software.amazon.dynamodb.services.local.main.ServerRunner",
				// -sharedDb: one database whatever the access key, since
				// tests sign as the functions' identities (awscalls) and
				// as themselves.
				"-inMemory", "-sharedDb", "-disableTelemetry", "-port", strconv.Itoa(port)}
		}},
		{"moto server", func(port int) []string {
			return []string{moto, "-H", "127.0.0.1", "-p", strconv.Itoa(port)}
		}},
	}
	// Start both before waiting on either: the JVM's start-up dominates.
	for _, s := range specs {
		e, err := b.launch(s.name, s.argv, logDir)
		if err != nil {
			b.stop()
			return nil, err
		}
		b.engines = append(b.engines, e)
	}
	for _, e := range b.engines {
		if err := waitReady(ctx, e, cfg.startTimeout); err != nil {
			b.stop()
			return nil, err
		}
	}
	if cfg.calls != "" {
		b.recorder = &awscalls.Recorder{}
		for _, e := range b.engines {
			p, err := startRecording(e.url, b.recorder)
			if err != nil {
				b.stop()
				return nil, err
			}
			e.proxy = p
		}
	}
	return b, nil
}

// checkInstalled turns a missing engine into an instruction rather than an
// exec error.
func checkInstalled(cfg config) error {
	jars, _ := filepath.Glob(filepath.Join(cfg.dynamoDir, "DynamoDBLocal-*.jar"))
	if len(jars) == 0 {
		return fmt.Errorf("DynamoDB Local is not installed in %s: run `make testbed-install`", cfg.dynamoDir)
	}
	if _, err := exec.LookPath(cfg.java); err != nil {
		return fmt.Errorf("java not found (%v): install a JDK or JRE 17 or newer", err)
	}
	if _, err := os.Stat(cfg.moto); err != nil {
		return fmt.Errorf("moto server is not installed at %s: run `make testbed-install`", cfg.moto)
	}
	return nil
}

// launch starts one engine on a free port in its own process group, so that
// stopping it also stops anything it spawned.
func (b *bed) launch(name string, argv func(port int) []string, logDir string) (*engine, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	logPath := filepath.Join(logDir, fmt.Sprintf("%s.log", sanitize(name)))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: create log: %w", name, err)
	}
	args := argv(port)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Engines write files of their own into the working directory (DynamoDB
	// Local leaves dynamodb-local-metadata.json); keep them out of the tree.
	cmd.Dir = logDir
	cmd.SysProcAttr = engineAttr()
	if err := startLocked(cmd.Start); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, args[0], err)
	}
	e := &engine{
		name:    name,
		url:     "http://127.0.0.1:" + strconv.Itoa(port),
		logPath: logPath,
		cmd:     cmd,
		exited:  make(chan struct{}),
	}
	go func() {
		e.waitErr = cmd.Wait()
		logFile.Close()
		close(e.exited)
		select {
		case <-b.stopping:
		default:
			b.died <- fmt.Errorf("%s exited unexpectedly (%v); see %s", name, e.waitErr, logPath)
		}
	}()
	return e, nil
}

// waitReady polls the engine until it answers any HTTP request, it exits, or
// the timeout passes.
func waitReady(ctx context.Context, e *engine, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/", nil)
		if err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-e.exited:
			return fmt.Errorf("%s exited during start-up (%v); see %s:\n%s", e.name, e.waitErr, e.logPath, tail(e.logPath, 2000))
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer on %s within %s: %w; see %s", e.name, e.url, timeout, context.Cause(ctx), e.logPath)
		case <-tick.C:
		}
	}
}

// stop terminates every engine (SIGTERM, then SIGKILL after a grace period)
// and waits for each to be reaped. It is safe to call more than once.
func (b *bed) stop() {
	b.stopOnce.Do(func() {
		close(b.stopping)
		for _, e := range b.engines {
			if e.proxy != nil {
				e.proxy.close()
			}
		}
		for _, e := range b.engines {
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
		}
		for _, e := range b.engines {
			select {
			case <-e.exited:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
				<-e.exited
			}
		}
	})
}

// release stops the engines and removes the temporary log directory when the
// run succeeded; after a failure the logs are kept and their place printed.
func (b *bed) release(ok bool) {
	b.stop()
	if !b.ownLogDir {
		return
	}
	if ok {
		_ = os.RemoveAll(b.logDir)
		return
	}
	fmt.Fprintf(os.Stderr, "testbed: engine logs kept in %s\n", b.logDir)
}

// environ is what the command needs to reach the engines through the AWS SDK
// with dummy credentials, and never a real account.
func (b *bed) environ() []string {
	env := []string{
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_REGION=" + b.region,
		"AWS_DEFAULT_REGION=" + b.region,
		"AWS_EC2_METADATA_DISABLED=true",
		// Integration tests fail instead of skipping when an endpoint is missing.
		"WXTOKEN_TESTBED=required",
	}
	for _, e := range b.engines {
		u := e.url
		if e.proxy != nil {
			u = e.proxy.url
		}
		switch e.name {
		case "DynamoDB Local":
			env = append(env, "AWS_ENDPOINT_URL_DYNAMODB="+u)
		case "moto server":
			env = append(env, "AWS_ENDPOINT_URL_SSM="+u, "AWS_ENDPOINT_URL_KMS="+u)
		}
	}
	return env
}

// freePort asks the kernel for an unused loopback port. The port is released
// before the engine binds it; a collision in between makes the engine exit,
// which start reports.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("find a free port: not a TCP address")
	}
	return addr.Port, nil
}

// tail returns at most n bytes from the end of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, 2)
	}
	buf := make([]byte, n)
	k, _ := f.Read(buf)
	return string(buf[:k])
}

// sanitize makes an engine name usable as a file name.
func sanitize(s string) string {
	out := []byte(s)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			out[i] = '-'
		}
	}
	return string(out)
}
