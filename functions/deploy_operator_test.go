package functions_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
)

// operatorCommand runs the operator command (infra/wxtoken) with --stack
// against the stack deployed in moto: it finds the table and the prefix in
// the stack's outputs, as it does against AWS, and shows the app the
// functions refreshed. Its calls sign with an access key that is no
// function's, so the IAM check does not count them as a function's.
func (d *deployment) operatorCommand(t *testing.T, generation int64) {
	bin := filepath.Join(t.TempDir(), "wxtoken")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/wxtoken/wxtoken/infra/wxtoken").CombinedOutput(); err != nil {
		t.Fatalf("go build infra/wxtoken: %v\n%s", err, out)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_ENDPOINT_URL="+d.motoURL, "AWS_ACCESS_KEY_ID=Operator", "AWS_SECRET_ACCESS_KEY=operator",
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	sink := leakscan.Sink(t, "wxtoken-stack")
	wxtoken := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		_, _ = sink.Write(out.Bytes())
		_, _ = sink.Write(errOut.Bytes())
		var exit *exec.ExitError
		switch {
		case err == nil:
			return out.String(), errOut.String(), 0
		case errors.As(err, &exit):
			return out.String(), errOut.String(), exit.ExitCode()
		}
		t.Fatalf("wxtoken %v: %v", args, err)
		return "", "", -1
	}

	out, errOut, code := wxtoken("--stack", d.stack, "apps", "list", "--json")
	if code != 0 {
		t.Fatalf("wxtoken --stack %s apps list: exit %d\n%s", d.stack, code, errOut)
	}
	var list struct {
		Target string `json:"target"`
		Apps   []struct {
			Name       string `json:"name"`
			Mode       string `json:"mode"`
			Generation int64  `json:"generation"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("apps list --json: %v\n%s", err, out)
	}
	if !strings.Contains(list.Target, d.stack) || len(list.Apps) != 1 || list.Apps[0].Name != "demo" ||
		list.Apps[0].Mode != "stable" || list.Apps[0].Generation != generation {
		t.Errorf("apps list of stack %s: %s", d.stack, out)
	}

	out, errOut, code = wxtoken("--stack", d.stack, "apps", "show", "demo", "--json")
	var show struct {
		Published    bool  `json:"published"`
		TokenVersion int64 `json:"token_version"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &show) != nil || !show.Published || show.TokenVersion != generation {
		t.Errorf("apps show demo: exit %d, %s%s; want the token of generation %d published", code, out, errOut, generation)
	}

	_, errOut, code = wxtoken("--stack", d.stack+"-missing", "apps", "list")
	if code != 3 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("a stack that does not exist: exit %d, %q; want 3 and \"does not exist\"", code, errOut)
	}
}
