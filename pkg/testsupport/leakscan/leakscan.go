// Package leakscan checks that no token and no secret reaches any log of the
// test suite (design.md §5).
//
// When WXTOKEN_SCAN_DIR is set (`make test` sets it), the WeChat sandbox
// records every token it issues and every secret it is given as a needle
// under $WXTOKEN_SCAN_DIR/needles, and the test harnesses copy what they
// capture (refresher and API logs, function processes' output) into
// $WXTOKEN_SCAN_DIR/logs through Sink. `go test -v` output and the engines'
// logs go there too. After the suite, Scan (the command
// infra/local/leakscan) looks for every needle in every log: a token is
// found from any 64 consecutive characters of it, a secret whole.
package leakscan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// DirEnv names the directory of needles and logs.
const DirEnv = "WXTOKEN_SCAN_DIR"

// Needle kinds.
const (
	Token  = "token"
	Secret = "secret"
)

// chunk is the length of the token pieces looked for; any leaked run of
// 2*chunk characters of a token holds a whole aligned piece.
const chunk = 32

// minSecret: shorter secrets are not looked for (they would match ordinary
// words); the sandbox's apps in tests all have longer ones.
const minSecret = 8

var needles struct {
	once sync.Once
	mu   sync.Mutex
	f    *os.File
}

// Record notes a token or a secret to look for, when DirEnv is set. It is
// safe for concurrent use and cheap when DirEnv is unset.
func Record(kind, value string) {
	dir := os.Getenv(DirEnv)
	if dir == "" || value == "" || strings.ContainsAny(value, "\t\n") {
		return
	}
	needles.once.Do(func() {
		d := filepath.Join(dir, "needles")
		if err := os.MkdirAll(d, 0o755); err != nil {
			return
		}
		f, err := os.CreateTemp(d, fmt.Sprintf("%d-*.txt", os.Getpid()))
		if err == nil {
			needles.f = f
		}
	})
	needles.mu.Lock()
	defer needles.mu.Unlock()
	if needles.f != nil {
		_, _ = needles.f.WriteString(kind + "\t" + value + "\n")
	}
}

// TB is the part of testing.TB that Sink needs.
type TB interface {
	Name() string
	Cleanup(func())
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Sink returns a writer whose bytes go to a log file of the scan directory,
// named after the test and name, closed when the test ends; io.Discard when
// DirEnv is unset. Harnesses tee what they capture into it.
func Sink(tb TB, name string) io.Writer {
	dir := os.Getenv(DirEnv)
	if dir == "" {
		return io.Discard
	}
	d := filepath.Join(dir, "logs")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return io.Discard
	}
	base := unsafeName.ReplaceAllString(tb.Name()+"-"+name, "_")
	if len(base) > 100 {
		base = base[:100]
	}
	f, err := os.CreateTemp(d, base+"-*.log")
	if err != nil {
		return io.Discard
	}
	w := &lockedFile{f: f}
	tb.Cleanup(w.close)
	return w
}

// lockedFile serializes writes and ignores writes after close (a process
// may still write while the test ends).
type lockedFile struct {
	mu     sync.Mutex
	f      *os.File
	closed bool
}

func (l *lockedFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	return l.f.Write(p)
}

func (l *lockedFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	_ = l.f.Close()
}

// Finding is a needle found in a log.
type Finding struct {
	Kind string // Token or Secret
	File string // the log, relative to the scan directory
	Line int
}

func (f Finding) String() string { return fmt.Sprintf("%s:%d: a %s", f.File, f.Line, f.Kind) }

// Summary is what Scan looked at.
type Summary struct {
	Tokens, Secrets int // distinct needles
	Files           int
	Bytes           int64
}

// Scan looks for every needle recorded under dir in every other file under
// dir. It fails when no needle was recorded or no harness log was captured
// (the recording is broken, so a clean result would mean nothing).
func Scan(dir string) ([]Finding, Summary, error) {
	var sum Summary
	tokens := map[string]bool{}      // aligned chunks of every token
	secrets := map[string][]string{} // by their first minSecret bytes
	seenSecret := map[string]bool{}
	needleDir := filepath.Join(dir, "needles")
	entries, err := os.ReadDir(needleDir)
	if err != nil {
		return nil, sum, fmt.Errorf("leakscan: read needles: %w", err)
	}
	seenToken := map[string]bool{}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(needleDir, e.Name()))
		if err != nil {
			return nil, sum, fmt.Errorf("leakscan: %w", err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			kind, value, ok := strings.Cut(line, "\t")
			switch {
			case !ok:
			case kind == Token && len(value) >= 2*chunk && !seenToken[value]:
				seenToken[value] = true
				for i := 0; i+chunk <= len(value); i += chunk {
					tokens[value[i:i+chunk]] = true
				}
			case kind == Secret && len(value) >= minSecret && !seenSecret[value]:
				seenSecret[value] = true
				secrets[value[:minSecret]] = append(secrets[value[:minSecret]], value)
			}
		}
	}
	sum.Tokens, sum.Secrets = len(seenToken), len(seenSecret)
	if sum.Tokens == 0 || sum.Secrets == 0 {
		return nil, sum, errors.New("leakscan: no tokens or no secrets were recorded; is the sandbox recording needles?")
	}
	var found []Finding
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == needleDir {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sum.Files++
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Bytes()
			sum.Bytes += int64(len(line)) + 1
			if k := lineLeaks(line, tokens, secrets); k != "" {
				found = append(found, Finding{Kind: k, File: rel, Line: n})
			}
		}
		return sc.Err()
	})
	if err != nil {
		return nil, sum, fmt.Errorf("leakscan: %w", err)
	}
	if logs, _ := os.ReadDir(filepath.Join(dir, "logs")); len(logs) == 0 {
		return nil, sum, errors.New("leakscan: no harness log was captured under logs/; are the sinks (leakscan.Sink) wired?")
	}
	return found, sum, nil
}

// lineLeaks returns the kind of needle in line, or "".
func lineLeaks(line []byte, tokens map[string]bool, secrets map[string][]string) string {
	for i := 0; i+chunk <= len(line); i++ {
		if tokenChar(line[i]) && tokens[string(line[i:i+chunk])] {
			return Token
		}
	}
	for i := 0; i+minSecret <= len(line); i++ {
		for _, s := range secrets[string(line[i:i+minSecret])] {
			if bytes.HasPrefix(line[i:], []byte(s)) {
				return Secret
			}
		}
	}
	return ""
}

func tokenChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_' || c == '-'
}
