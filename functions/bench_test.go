//go:build linux

package functions_test

// Benchmarks of the functions themselves (issue 7, point 4): the size of each
// linux/arm64 bootstrap, the time from process start to the first poll of
// invocation/next, and the peak RSS of a bootstrap process after 1 and 100
// invocations, measured with /usr/bin/time -v. They run only with -bench:
//
//	go run ./infra/local/testbed ... -- env WXTOKEN_BENCH_DIR=DIR \
//	    go test -run '^$' -bench . -benchtime 1x ./functions
//
// With WXTOKEN_BENCH_DIR set, every benchmark rewrites DIR/functions.md from
// all the measurements taken so far in the run (see writeReport).
//
// Start-to-ready and RSS are measured on a build for the machine running the
// benchmark (which may not be able to run arm64) made with the Lambda build's
// flags; only the sizes come from the real arm64 build.

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/api"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/schedule"
	"github.com/wxtoken/wxtoken/pkg/testsupport/lambdatest"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
)

// lambdaFlags are the Makefile's LAMBDA_FLAGS as go build arguments, and
// makeLambdaFlags the same as the Makefile spells them; checkFlags fails a
// benchmark when the Makefile has moved on.
var lambdaFlags = []string{"-tags", "lambda.norpc", "-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

const makeLambdaFlags = `-tags lambda.norpc -trimpath -buildvcs=false -ldflags='-s -w'`

// gnuTime is the standard tool that measures a process's peak RSS.
const gnuTime = "/usr/bin/time"

// benchFunctions are the two Lambda functions, by directory name.
var benchFunctions = []struct{ name, pkg string }{
	{"scheduled-refresh", scheduledPkg},
	{"refresh-api", apiPkg},
}

const (
	// readySamples is how many starts one iteration of
	// BenchmarkStartToReady times, so that -benchtime 1x gives a median.
	readySamples = 21
	// rssSamples is how many runs one iteration of BenchmarkInvocationRSS
	// measures per invocation count (peak RSS varies with GC timing).
	rssSamples = 3
	// scheduledApps is how many apps a scheduled run handles in the RSS
	// and in-process benchmarks.
	scheduledApps = 5
)

// rssInvocations are the invocation counts after which peak RSS is taken.
var rssInvocations = []int{1, 100}

// checkFlags fails tb unless the Makefile's LAMBDA_FLAGS are still the ones
// this file builds with.
func checkFlags(tb testing.TB) {
	tb.Helper()
	mk, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		tb.Fatalf("read the Makefile: %v", err)
	}
	for line := range strings.Lines(string(mk)) {
		if v, ok := strings.CutPrefix(line, "LAMBDA_FLAGS"); ok {
			v = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":="))
			if v != makeLambdaFlags {
				tb.Fatalf("the Makefile's LAMBDA_FLAGS are %q, this benchmark builds with %q: update lambdaFlags", v, makeLambdaFlags)
			}
			return
		}
	}
	tb.Fatal("no LAMBDA_FLAGS in the Makefile")
}

// buildLambda builds pkg as the Lambda build does (CGO_ENABLED=0,
// lambdaFlags) for linux/goarch into a temporary directory and returns the
// bootstrap's path. It fails tb when the build fails.
func buildLambda(tb testing.TB, pkg, goarch string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "bootstrap")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(append([]string{"build"}, lambdaFlags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("GOARCH=%s go build %s: %v\n%s", goarch, pkg, err, msg)
	}
	return out
}

// fnResult is what the benchmarks measured of one function.
type fnResult struct {
	size       int64           // arm64 bootstrap, bytes
	loaded     int64           // its sections' bytes without padding
	ready      []time.Duration // start-to-ready samples
	rss        map[int][]int64 // invocations -> sorted peak RSS samples, KiB
	allocs     float64         // in process, per invocation
	allocBytes float64         // in process, per invocation
	inProcess  string          // what the in-process benchmark invoked
}

// results collects measurements across the benchmarks of one run, for
// writeReport.
var results = struct {
	sync.Mutex
	fn map[string]*fnResult
}{fn: map[string]*fnResult{}}

// record calls f with name's results, under the lock.
func record(name string, f func(*fnResult)) {
	results.Lock()
	defer results.Unlock()
	r := results.fn[name]
	if r == nil {
		r = &fnResult{rss: map[int][]int64{}}
		results.fn[name] = r
	}
	f(r)
}

// BenchmarkArm64Size builds each function for linux/arm64 with the Lambda
// flags and reports the bootstrap's size; ns/op is the build's duration.
func BenchmarkArm64Size(b *testing.B) {
	checkFlags(b)
	for _, f := range benchFunctions {
		b.Run(f.name, func(b *testing.B) {
			var size, loaded int64
			for b.Loop() {
				bin := buildLambda(b, f.pkg, "arm64")
				fi, err := os.Stat(bin)
				if err != nil {
					b.Fatal(err)
				}
				size = fi.Size()
				if loaded, err = sectionBytes(bin); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "bytes")
			b.ReportMetric(float64(size)/(1<<20), "MiB")
			b.ReportMetric(float64(loaded), "section-bytes")
			record(f.name, func(r *fnResult) { r.size, r.loaded = size, loaded })
		})
	}
	writeReport(b)
}

// sectionBytes returns the bytes of an ELF file's sections that the file
// holds and the loader maps, without the padding between segments (which on
// arm64 aligns them to 64 KiB, so that two builds differing by a few KiB of
// code can have files of the same size).
func sectionBytes(path string) (int64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Type != elf.SHT_NOBITS {
			n += int64(s.Size)
		}
	}
	return n, nil
}

// BenchmarkStartToReady starts each function's bootstrap (host build, Lambda
// flags) under a lambdatest.Runtime with a valid configuration and times
// process start to its first poll of invocation/next: the Go runtime's
// start, config.Load (environment, AWS SDK default configuration, client
// construction; no network call) and lambda.Start. Each iteration times
// readySamples starts; ns/op and ms/ready are the median of all samples.
func BenchmarkStartToReady(b *testing.B) {
	checkFlags(b)
	env := []string{"WXTOKEN_TABLE=wxtoken-bench", "WXTOKEN_PARAMETER_PREFIX=/wxtoken-bench"}
	if os.Getenv("AWS_REGION") == "" {
		env = append(env, "AWS_REGION=us-east-1") // Lambda always sets it
	}
	for _, f := range benchFunctions {
		b.Run(f.name, func(b *testing.B) {
			bin := buildLambda(b, f.pkg, runtime.GOARCH)
			var samples []time.Duration
			for b.Loop() {
				for range readySamples {
					samples = append(samples, startToReady(b, bin, env))
				}
			}
			slices.Sort(samples)
			med := median(samples)
			b.ReportMetric(float64(med.Nanoseconds()), "ns/op")
			b.ReportMetric(ms(med), "ms/ready")
			b.ReportMetric(ms(samples[0]), "min-ms/ready")
			b.ReportMetric(ms(samples[len(samples)-1]), "max-ms/ready")
			record(f.name, func(r *fnResult) { r.ready = samples })
		})
	}
	writeReport(b)
}

// startToReady starts bin once, waits until it polls invocation/next, stops
// it by closing the runtime (the function then exits) and returns the time
// from just before the start to the poll.
func startToReady(b *testing.B, bin string, env []string) time.Duration {
	b.Helper()
	rt := lambdatest.NewRuntime()
	defer rt.Close()
	start := time.Now()
	p := rt.Start(b, bin, env...)
	for rt.Waiting() == 0 {
		select {
		case <-p.Exited():
			b.Fatalf("the function exited before it was ready; init error: %v", rt.InitError())
		default:
		}
		if time.Since(start) > 20*time.Second {
			b.Fatal("the function did not poll invocation/next within 20 s")
		}
		time.Sleep(50 * time.Microsecond)
	}
	d := time.Since(start)
	rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Wait(ctx); errors.Is(err, context.DeadlineExceeded) {
		b.Fatal("the function did not exit after its runtime closed")
	}
	return d
}

// BenchmarkInvocationRSS runs each function's bootstrap (host build, Lambda
// flags) under /usr/bin/time -v against the test bed, delivers 1 or 100
// invocations, stops it and reports its peak RSS ("Maximum resident set
// size") as peak-RSS-KiB, the median of rssSamples runs per iteration. Each run gets a fresh stack: scheduled-refresh gets
// schedule.json with scheduledApps apps registered (the first run refreshes
// them all, later ones find them not due); refresh-api gets
// api-refresh-no-body.json, api-refresh.json and api-status.json in turn for
// an app whose token is published. ns/op is the time from process start to
// its exit after the last invocation, for all the runs of an iteration.
func BenchmarkInvocationRSS(b *testing.B) {
	checkFlags(b)
	if _, err := os.Stat(gnuTime); err != nil {
		b.Skipf("%s (GNU time) is needed: %v", gnuTime, err)
	}
	for _, f := range benchFunctions {
		b.Run(f.name, func(b *testing.B) {
			bin := buildLambda(b, f.pkg, runtime.GOARCH)
			for _, n := range rssInvocations {
				b.Run(fmt.Sprintf("invocations=%d", n), func(b *testing.B) {
					var samples []int64
					for b.Loop() {
						for range rssSamples {
							samples = append(samples, peakRSS(b, f.name, bin, n))
						}
					}
					slices.Sort(samples)
					b.ReportMetric(float64(median(samples)), "peak-RSS-KiB")
					b.ReportMetric(float64(samples[0]), "min-peak-RSS-KiB")
					b.ReportMetric(float64(samples[len(samples)-1]), "max-peak-RSS-KiB")
					record(f.name, func(r *fnResult) { r.rss[n] = samples })
				})
			}
		})
	}
	writeReport(b)
}

// benchStack starts a stack for function fn: scheduledApps apps for the
// schedule, the app "demo" of the sample events with a published token for
// the API.
func benchStack(b *testing.B, fn string) *stacktest.Stack {
	b.Helper()
	apps := []registry.App{{Name: "demo", AppID: appID, Kind: registry.OfficialAccount, Mode: registry.Stable}}
	if fn == "scheduled-refresh" {
		for i := 2; i <= scheduledApps; i++ {
			apps = append(apps, registry.App{Name: fmt.Sprintf("app-%d", i), AppID: fmt.Sprintf("wxbench%09d", i), Kind: registry.OfficialAccount, Mode: registry.Stable})
		}
	}
	st := stacktest.New(b, stacktest.Options{}, apps...)
	if fn == "refresh-api" {
		st.Publish("demo")
	}
	return st
}

// benchEvents returns the events fn is invoked with, in turn.
func benchEvents(b *testing.B, fn string) [][]byte {
	b.Helper()
	names := []string{"schedule.json"}
	if fn == "refresh-api" {
		names = []string{"api-refresh-no-body.json", "api-refresh.json", "api-status.json"}
	}
	var evs [][]byte
	for _, n := range names {
		ev, err := os.ReadFile(filepath.Join("..", "events", n))
		if err != nil {
			b.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// peakRSS runs bin under /usr/bin/time -v against a fresh stack, invokes it
// n times, closes the runtime so that it exits, and returns its peak RSS in
// KiB. The process group is killed if the benchmark fails first.
func peakRSS(b *testing.B, fn, bin string, n int) int64 {
	b.Helper()
	b.StopTimer() // the stack's setup is not timed
	defer b.StartTimer()
	st := benchStack(b, fn)
	evs := benchEvents(b, fn)
	rt := lambdatest.NewRuntime()
	defer rt.Close()
	dir := b.TempDir()
	report := filepath.Join(dir, "time-v.txt")
	outPath := filepath.Join(dir, "output.log")
	out, err := os.Create(outPath)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	// Configured as in TestEndToEnd, at the production log level.
	cmd := exec.Command(gnuTime, "-v", "-o", report, bin)
	cmd.Env = append(os.Environ(), rt.Env(),
		"WXTOKEN_TABLE="+st.Table,
		"WXTOKEN_PARAMETER_PREFIX="+st.Prefix,
		"WXTOKEN_WECHAT_BASE_URLS="+st.Sandbox.URL,
		"WXTOKEN_WECOM_BASE_URLS="+st.Sandbox.URL,
		"WXTOKEN_SERVICE=bench",
		"WXTOKEN_LOG_LEVEL=info",
	)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // time and bootstrap
	b.StartTimer()
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", gnuTime, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	// redacted returns the process's output with the stack's secrets and
	// issued tokens replaced, and whether there were any.
	redacted := func() (string, bool) {
		o, _ := os.ReadFile(outPath)
		s, leaked := string(o), false
		for _, v := range append(st.Sandbox.Issued(), st.Secrets...) {
			if strings.Contains(s, v) {
				s, leaked = strings.ReplaceAll(s, v, "[redacted]"), true
			}
		}
		return s, leaked
	}
	// output returns the tail of the redacted output, for failure messages.
	output := func() string {
		s, _ := redacted()
		if len(s) > 3000 {
			s = "..." + s[len(s)-3000:]
		}
		return s
	}

	timeout := apiTimeout
	if fn == "scheduled-refresh" {
		timeout = scheduledTimeout
	}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		res, err := rt.Invoke(ctx, evs[i%len(evs)])
		cancel()
		if err != nil {
			b.Fatalf("invocation %d: %v\n%s", i+1, err, output())
		}
		if res.Error != nil {
			b.Fatalf("invocation %d: function error %v\n%s", i+1, res.Error, output())
		}
		if err := checkAnswer(fn, res.Payload); err != nil {
			b.Fatalf("invocation %d: %v", i+1, err)
		}
	}
	rt.Close()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		b.Fatalf("the function did not exit after its runtime closed\n%s", output())
	}
	b.StopTimer()
	if _, leaked := redacted(); leaked {
		b.Errorf("%s's output holds a token or a secret", fn)
	}
	tv, err := os.ReadFile(report)
	if err != nil {
		b.Fatalf("read %s's report: %v", gnuTime, err)
	}
	kib, err := parseMaxRSS(string(tv))
	if err != nil {
		b.Fatal(err)
	}
	return kib
}

// checkAnswer checks that a function answered as it should on the stack of
// benchStack, without ever putting the payload (which can hold a token) in
// the error.
func checkAnswer(fn string, payload []byte) error {
	if fn == "scheduled-refresh" {
		var sum schedule.Summary
		if err := json.Unmarshal(payload, &sum); err != nil {
			return fmt.Errorf("summary is not JSON: %v", err)
		}
		if sum.Apps != scheduledApps || len(sum.NeedsAttention) != 0 {
			return fmt.Errorf("summary names %d apps, %d needing attention; want %d, none", sum.Apps, len(sum.NeedsAttention), scheduledApps)
		}
		return nil
	}
	var ans httpAnswer
	if err := json.Unmarshal(payload, &ans); err != nil {
		return fmt.Errorf("answer is not JSON: %v", err)
	}
	if ans.StatusCode != 200 {
		return fmt.Errorf("status %d, want 200", ans.StatusCode)
	}
	return nil
}

// parseMaxRSS returns the "Maximum resident set size (kbytes)" of a GNU time
// -v report, in KiB. It fails when the line is missing or not a number.
func parseMaxRSS(report string) (int64, error) {
	const key = "Maximum resident set size (kbytes):"
	sc := bufio.NewScanner(strings.NewReader(report))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), key); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || kib <= 0 {
				return 0, fmt.Errorf("time -v: maximum resident set size %q is not a positive number", strings.TrimSpace(v))
			}
			return kib, nil
		}
	}
	return 0, errors.New("time -v: no maximum resident set size in the report")
}

// TestParseMaxRSS checks the parser of /usr/bin/time -v reports that
// BenchmarkInvocationRSS relies on.
func TestParseMaxRSS(t *testing.T) {
	tests := []struct {
		name    string
		report  string
		want    int64
		wantErr bool
	}{
		{"exited non-zero", "Command exited with non-zero status 1\n\tCommand being timed: \"bootstrap\"\n\tUser time (seconds): 0.01\n" +
			"\tAverage resident set size (kbytes): 0\n\tMaximum resident set size (kbytes): 14336\n\tExit status: 1\n", 14336, false},
		{"clean exit", "\tMaximum resident set size (kbytes): 7\n", 7, false},
		{"missing", "\tAverage resident set size (kbytes): 0\n", 0, true},
		{"not a number", "\tMaximum resident set size (kbytes): lots\n", 0, true},
		{"zero", "\tMaximum resident set size (kbytes): 0\n", 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMaxRSS(tt.report)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseMaxRSS = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// BenchmarkHandler runs each function's handler in this process against the
// test bed, with allocations reported: refresh-api's Invoke with
// api-refresh-no-body.json (a published token, no WeChat call), and
// scheduled-refresh's Handle with schedule.json over scheduledApps apps that
// are not due. Allocations include the AWS SDK's and net/http's.
func BenchmarkHandler(b *testing.B) {
	for _, f := range benchFunctions {
		b.Run(f.name, func(b *testing.B) {
			st := benchStack(b, f.name)
			ev := benchEvents(b, f.name)[0]
			ctx := context.Background()
			var invoke func() error
			what := "an api-refresh-no-body.json request"
			if f.name == "refresh-api" {
				h := api.New(st.Refresher, slog.New(slog.DiscardHandler))
				invoke = func() error {
					out, err := h.Invoke(ctx, ev)
					if err == nil {
						err = checkAnswer(f.name, out)
					}
					return err
				}
			} else {
				for i := 2; i <= scheduledApps; i++ {
					st.Publish(fmt.Sprintf("app-%d", i))
				}
				st.Publish("demo")
				h := &schedule.Handler{Refresher: st.Refresher}
				what = fmt.Sprintf("a scheduled run over %d apps not due", scheduledApps)
				invoke = func() error {
					sum, err := h.Handle(ctx, ev)
					if err == nil && (sum.Apps != scheduledApps || sum.Counts["not_due"] != scheduledApps) {
						err = fmt.Errorf("summary %+v, want %d apps not due", sum.Counts, scheduledApps)
					}
					return err
				}
			}
			if err := invoke(); err != nil { // warm the SDK clients
				b.Fatal(err)
			}
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				if err := invoke(); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			record(f.name, func(r *fnResult) {
				r.allocs = float64(after.Mallocs-before.Mallocs) / float64(b.N)
				r.allocBytes = float64(after.TotalAlloc-before.TotalAlloc) / float64(b.N)
				r.inProcess = what
			})
		})
	}
	writeReport(b)
}

// writeReport writes $WXTOKEN_BENCH_DIR/functions.md from every measurement
// in results (cells not measured in this run say so). It does nothing when
// the variable is not set.
func writeReport(b *testing.B) {
	b.Helper()
	dir := os.Getenv("WXTOKEN_BENCH_DIR")
	if dir == "" {
		return
	}
	results.Lock()
	defer results.Unlock()
	host := runtime.GOOS + "/" + runtime.GOARCH
	var w strings.Builder
	w.WriteString("## The functions themselves\n\n")
	fmt.Fprintf(&w, "Sizes are of the linux/arm64 `bootstrap` that `make build` makes (CGO_ENABLED=0, `%s`). "+
		"Start-to-ready and peak RSS are measured on this %d-CPU %s machine, on a %s build with the same flags "+
		"(%s), so they stand for arm64 only approximately. ", makeLambdaFlags, runtime.NumCPU(), host, host, runtime.Version())
	fmt.Fprintf(&w, "Ready means the process's first poll of the Runtime API's `invocation/next` (pkg/testsupport/lambdatest), "+
		"timed from just before fork/exec; it includes config.Load (AWS SDK default configuration and clients, no network call). "+
		"Peak RSS is the \"Maximum resident set size\" that `%s -v` reports for the process after N invocations "+
		"(median of %d runs, min – max) "+
		"against the local test bed (DynamoDB Local, moto, WeChat sandbox): scheduled-refresh gets schedule.json with %d apps "+
		"(the first run refreshes them, later runs find them not due), refresh-api gets refresh (no body), refresh (stale token) "+
		"and status requests in turn for an app with a published token.\n\n", gnuTime, rssSamples, scheduledApps)
	w.WriteString("| Function | arm64 bootstrap size | start-to-ready: median (min – max) | peak RSS after 1 invocation | peak RSS after 100 invocations |\n")
	w.WriteString("|---|---:|---:|---:|---:|\n")
	var inproc, sections []string
	for _, f := range benchFunctions {
		r := results.fn[f.name]
		if r == nil {
			r = &fnResult{rss: map[int][]int64{}}
		}
		size, ready := "not measured", "not measured"
		if r.size > 0 {
			size = fmt.Sprintf("%.2f MiB (%d B)", float64(r.size)/(1<<20), r.size)
		}
		if len(r.ready) > 0 {
			ready = fmt.Sprintf("%.1f ms (%.1f – %.1f), %d starts", ms(median(r.ready)), ms(r.ready[0]), ms(r.ready[len(r.ready)-1]), len(r.ready))
		}
		rss := func(n int) string {
			if ks := r.rss[n]; len(ks) > 0 {
				return fmt.Sprintf("%.1f MiB (%.1f – %.1f), %d runs", mib(median(ks)), mib(ks[0]), mib(ks[len(ks)-1]), len(ks))
			}
			return "not measured"
		}
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %s |\n", f.name, size, ready, rss(1), rss(100))
		if r.loaded > 0 {
			sections = append(sections, fmt.Sprintf("%s %d B", f.name, r.loaded))
		}
		if r.inProcess != "" {
			inproc = append(inproc, fmt.Sprintf("%s: %.0f allocations, %.0f KiB per invocation (%s)", f.name, r.allocs, r.allocBytes/1024, r.inProcess))
		}
	}
	if len(sections) > 0 {
		fmt.Fprintf(&w, "\nCode and data in each arm64 file, without the padding that aligns its segments to 64 KiB: %s.\n", strings.Join(sections, ", "))
	}
	if len(inproc) > 0 {
		fmt.Fprintf(&w, "\nIn process (Go benchmark, `b.ReportAllocs`, the handler called directly against the same engines; "+
			"the AWS SDK's and net/http's allocations included): %s.\n", strings.Join(inproc, "; "))
	}
	w.WriteString("\nReproduce: `go test -run '^$' -bench . -benchtime 1x ./functions` inside the test bed, with WXTOKEN_BENCH_DIR set.\n")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "functions.md"), []byte(w.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

// median returns the middle of sorted samples (the lower middle of an even
// count).
func median[T int64 | time.Duration](sorted []T) T { return sorted[(len(sorted)-1)/2] }

// mib converts KiB to MiB.
func mib(kib int64) float64 { return float64(kib) / 1024 }

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
