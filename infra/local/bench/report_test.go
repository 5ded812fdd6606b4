package bench_test

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchDirEnv names the directory the benchmarks write their sections to.
const BenchDirEnv = "WXTOKEN_BENCH_DIR"

// writeSection writes a markdown section for BENCHMARKS.md when
// WXTOKEN_BENCH_DIR is set.
func writeSection(tb testing.TB, name, text string) {
	tb.Helper()
	dir := os.Getenv(BenchDirEnv)
	if dir == "" {
		tb.Logf("%s not set; the section %s is not written:\n%s", BenchDirEnv, name, text)
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
}
