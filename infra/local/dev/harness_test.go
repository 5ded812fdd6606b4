package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/testsupport/syncbuf"
)

var (
	apiRE     = regexp.MustCompile(`API:\s+(http://\S+)`)
	sandboxRE = regexp.MustCompile(`WeChat sandbox on (http://\S+)`)
)

// devRun is one running local stack, as `make dev` runs it (against the
// test bed's engines), on free ports.
type devRun struct {
	api, sandbox string
	state        string
	out          *syncbuf.Buffer
	done         chan error
	cancel       context.CancelFunc
}

// launch starts the local stack with its state in state and waits for its
// banner; the schedule runs every `every`.
func launch(t *testing.T, state string, sink io.Writer, every string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &devRun{state: state, out: &syncbuf.Buffer{}, done: make(chan error, 1), cancel: cancel}
	go func() {
		d.done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-sandbox-addr", "127.0.0.1:0", "-state", state, "-every", every}, io.MultiWriter(d.out, sink))
	}()
	deadline := time.Now().Add(60 * time.Second)
	for d.api == "" && time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			cancel()
			t.Fatalf("dev ended early: %v\n%s", err, d.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if m := apiRE.FindStringSubmatch(d.out.String()); m != nil && strings.Contains(d.out.String(), "Ctrl-C stops everything") {
			d.api, d.sandbox = m[1], sandboxRE.FindStringSubmatch(d.out.String())[1]
		}
	}
	if d.api == "" {
		cancel()
		t.Fatalf("no banner within a minute:\n%s", d.out.String())
	}
	return d
}

// stop interrupts the stack (Ctrl-C) and waits for it to end.
func (d *devRun) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("dev ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("dev did not stop within 30 s of the interrupt")
	}
}

// sandboxCall calls the sandbox at path; the caller closes the answer.
func (d *devRun) sandboxCall(t *testing.T, method, path, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, d.sandbox+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// admin calls one of the sandbox's admin routes and fails the test unless
// it answers 200.
func (d *devRun) admin(t *testing.T, method, path, body string) {
	t.Helper()
	resp := d.sandboxCall(t, method, path, body)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
}

// wechatCall calls a WeChat path of the sandbox and returns its errcode.
func (d *devRun) wechatCall(t *testing.T, method, pathAndQuery, body string) int {
	t.Helper()
	resp := d.sandboxCall(t, method, pathAndQuery, body)
	defer resp.Body.Close()
	var ans struct {
		ErrCode int `json:"errcode"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatalf("%s %s: %v", method, pathAndQuery, err)
	}
	return ans.ErrCode
}

// operator is a shell of an operator working against a running make dev:
// the operator command built from this repository on its PATH, in a
// working directory of its own.
type operator struct {
	dev  *devRun
	bin  string // the directory holding the wxtoken binary
	dir  string // the working directory: make dev's state is its .cache/dev
	sink io.Writer
}

// buildWxtoken builds the operator command (infra/wxtoken) into a new
// directory and returns the directory.
func buildWxtoken(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(bin, "wxtoken"), "github.com/wxtoken/wxtoken/infra/wxtoken")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build infra/wxtoken: %v\n%s", err, out)
	}
	return bin
}

// secretRE matches the 32 hex digits of an AppSecret (the sandbox's
// accounts here have such secrets), to keep them out of failure messages.
var secretRE = regexp.MustCompile(`[0-9a-f]{32}`)

// masked is a command line fit for a test's output.
func masked(line string) string { return secretRE.ReplaceAllString(line, "<secret>") }

// sh runs a shell command line as the operator would type it, with stdin,
// and returns its combined output and exit code. The output goes to the
// leak scan.
func (o operator) sh(t *testing.T, line, stdin string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir = o.dir
	cmd.Env = append(os.Environ(), "PATH="+o.bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	_, _ = o.sink.Write(out)
	return string(out), exitCode(t, err, masked(line))
}

// exitCode is the exit code of a command that ended with err; it fails the
// test when the command could not run at all.
func exitCode(t *testing.T, err error, what string) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	t.Fatalf("run %s: %v", what, err)
	return -1
}

// wxtoken runs the operator command against make dev with args (already
// split) and stdin, returning its stdout, stderr and exit code. What it
// prints goes to the leak scan, but for `token`'s stdout.
func (o operator) wxtoken(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(o.bin, "wxtoken"), append([]string{"--local"}, args...)...)
	cmd.Dir = o.dir
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := exitCode(t, cmd.Run(), fmt.Sprintf("wxtoken %v", args))
	if args[0] != "token" {
		_, _ = o.sink.Write(stdout.Bytes())
	}
	_, _ = o.sink.Write(stderr.Bytes())
	return stdout.String(), stderr.String(), code
}

// appShow is what the tests read of `wxtoken apps show NAME --json`.
type appShow struct {
	Name        string     `json:"name"`
	AppID       string     `json:"appid"`
	Mode        string     `json:"mode"`
	PausedUntil *time.Time `json:"paused_until"`
	LastError   *struct {
		Class   string `json:"class"`
		Errcode int    `json:"wechat_errcode"`
	} `json:"last_error"`
	Advice *struct {
		Problem string `json:"problem"`
		Fix     string `json:"fix"`
	} `json:"advice"`
	DriftCount  int    `json:"drift_count"`
	DriftAdvice string `json:"drift_advice"`
	Published   *bool  `json:"published"`
	CallsToday  int    `json:"calls_today"`
}

// show runs `wxtoken apps show NAME --json`; ok is false when the app is
// not registered (exit 3).
func (o operator) show(t *testing.T, app string) (appShow, bool) {
	t.Helper()
	out, errOut, code := o.wxtoken(t, "", "apps", "show", app, "--json")
	if code == 3 {
		return appShow{}, false
	}
	var v appShow
	if code != 0 {
		t.Fatalf("wxtoken apps show %s: exit %d: %s", app, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("wxtoken apps show %s --json: %v\n%s", app, err, out)
	}
	return v, true
}

// waitFor polls `apps show` until cond holds, for at most limit; it fails
// the test with the last view otherwise.
func (o operator) waitFor(t *testing.T, app, what string, limit time.Duration, cond func(appShow) bool) appShow {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		v, _ := o.show(t, app)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s within %s; last seen %+v", app, what, limit, v)
		}
		time.Sleep(250 * time.Millisecond) // polling interval, not a stand-in for a condition
	}
}

// healthy: a token is published and nothing pauses the app.
func healthy(v appShow) bool {
	return v.Published != nil && *v.Published && v.PausedUntil == nil
}
