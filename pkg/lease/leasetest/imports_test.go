package leasetest_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakes are the in-memory fakes of the engine-backed packages.
var fakes = []string{
	"github.com/wxtoken/wxtoken/pkg/lease/leasetest",
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest",
	"github.com/wxtoken/wxtoken/pkg/registry/registrytest",
}

// TestFakesStayInTests fails when product code imports a fake: only _test.go
// files and other test-support packages (pkg/testsupport/..., or a package
// whose directory ends in "test") may.
func TestFakesStayInTests(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found from the test's directory: %v", err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		if strings.HasSuffix(dir, "test") || strings.HasPrefix(filepath.ToSlash(dir), "pkg/testsupport/") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, fake := range fakes {
				if p == fake {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s imports %s: fakes are for tests only", rel, fake)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the module: %v", err)
	}
}
