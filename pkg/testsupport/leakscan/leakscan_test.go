package leakscan_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
)

func TestScan(t *testing.T) {
	token := strings.Repeat("0aB_c-D9xYz", 60)[:512]
	secret := "secret-shop-0123456789abcdefghij"
	cases := []struct {
		name string
		log  string
		want string // kind found, "" for none
	}{
		{"clean", `{"level":"INFO","msg":"refreshed","fp":"3f2a9c01"}`, ""},
		{"whole token", `{"msg":"oops","token":"` + token + `"}`, leakscan.Token},
		{"token in a URL", "GET /cgi-bin/getcallbackip?access_token=" + token + " HTTP/1.1", leakscan.Token},
		{"64 characters from the middle", "x" + token[100:164] + "x", leakscan.Token},
		{"a short prefix only", "fp " + token[:20], ""},
		{"secret", "url=https://api.weixin.qq.com/cgi-bin/token?secret=" + secret + "&appid=wx1", leakscan.Secret},
		{"secret's start only", "secret-shop-0123", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv(leakscan.DirEnv, dir)
			leakscan.Record(leakscan.Token, token)
			leakscan.Record(leakscan.Secret, secret)
			// Record opens one needle file per process; write this case's
			// needles where Scan looks, as a second process would.
			mustWrite(t, filepath.Join(dir, "needles", "other.txt"), "token\t"+token+"\nsecret\t"+secret+"\n")
			w := leakscan.Sink(t, "harness")
			if _, err := w.Write([]byte("first line\n" + c.log + "\n")); err != nil {
				t.Fatal(err)
			}
			found, sum, err := leakscan.Scan(dir)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Tokens != 1 || sum.Secrets != 1 || sum.Files == 0 {
				t.Errorf("summary %+v; want 1 token, 1 secret, some files", sum)
			}
			switch {
			case c.want == "" && len(found) != 0:
				t.Errorf("found %v in a clean log", found)
			case c.want != "" && (len(found) != 1 || found[0].Kind != c.want || found[0].Line != 2):
				t.Errorf("found %v; want one %s on line 2", found, c.want)
			}
		})
	}
}

func TestScanWithoutNeedlesFails(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "needles", "empty.txt"), "")
	mustWrite(t, filepath.Join(dir, "go-test.log"), "PASS\n")
	if _, _, err := leakscan.Scan(dir); err == nil {
		t.Error("a scan with nothing to look for passed")
	}
}

func TestScanWithoutHarnessLogsFails(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "needles", "n.txt"), "token\t"+strings.Repeat("0aB_c-D9", 10)+"\nsecret\tsecret-shop-0123456789\n")
	mustWrite(t, filepath.Join(dir, "go-test.log"), "PASS\n")
	if _, _, err := leakscan.Scan(dir); err == nil {
		t.Error("a scan with no harness log passed")
	}
}

func mustWrite(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
