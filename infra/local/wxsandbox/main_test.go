package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fileText reads a file on demand, for messages.
type fileText string

func (f fileText) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}

func TestAppFlag(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
		wantIPs int
	}{
		{"offiaccount:wx1:s1", false, 0},
		{"miniprogram:wx2:s2:203.0.113.1,203.0.113.2", false, 2},
		{"wecom:ww1:s3", false, 0},
		{"wx1:s1", true, 0},
		{"bogus:wx1:s1", true, 0},
		{"offiaccount::s1", true, 0},
		{"offiaccount:wx1:", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var a appFlags
			err := a.Set(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Set(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && len(a[0].AllowedIPs) != tt.wantIPs {
				t.Errorf("AllowedIPs = %v, want %d", a[0].AllowedIPs, tt.wantIPs)
			}
		})
	}
}

// TestStandalone runs the command as documented in the README and asks it
// for a classic, a stable and a WeCom token over HTTP, then stops it.
func TestStandalone(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "wxsandbox")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	urlFile := filepath.Join(dir, "url")
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-url-file", urlFile, "-quiet",
		"-app", "offiaccount:wxdemo0000000001:demosecret",
		"-app", "wecom:wwdemo0000000001:wecomsecret")
	// A file, not a buffer: the process writes while the test reads.
	outPath := filepath.Join(dir, "output")
	outFile, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	out := fileText(outPath)
	cmd.Stdout, cmd.Stderr = outFile, outFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()

	var base string
	deadline := time.Now().Add(30 * time.Second)
	for base == "" {
		if b, err := os.ReadFile(urlFile); err == nil && len(b) > 0 {
			base = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("wxsandbox exited early: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("wxsandbox wrote no URL in 30s\n%s", out.String())
		}
	}

	calls := []struct {
		name, method, path, body string
	}{
		{"classic", "GET", "/cgi-bin/token?grant_type=client_credential&appid=wxdemo0000000001&secret=demosecret", ""},
		{"stable", "POST", "/cgi-bin/stable_token", `{"grant_type":"client_credential","appid":"wxdemo0000000001","secret":"demosecret"}`},
		{"wecom", "GET", "/cgi-bin/gettoken?corpid=wwdemo0000000001&corpsecret=wecomsecret", ""},
	}
	for _, c := range calls {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var a struct {
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
		}
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || a.AccessToken == "" || a.ExpiresIn != 7200 {
			t.Errorf("%s: token %d chars, expires_in %d, err %v", c.name, len(a.AccessToken), a.ExpiresIn, err)
		}
	}
	if !strings.Contains(out.String(), "wxsandbox: listening on "+base) {
		t.Errorf("output does not announce the base URL:\n%s", out.String())
	}

	_ = cmd.Process.Signal(syscall.SIGINT)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGINT: %v", err)
		}
	case <-ctx.Done():
		t.Error("wxsandbox did not stop within 10s of SIGINT")
	}
}
