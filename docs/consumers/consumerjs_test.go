package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// TestNodeSnippetReadRule runs the README's Node.js snippet (consumer.js)
// with a clock the test moves (testdata/readrule.js) against the local
// stack, with the token's _meta parameter written by the test: while the
// meta says no rotation is due, reads in one process cost one GetParameters
// request; just after rotates_at (plus at most two minutes) it reads again; a
// meta of another version, an unreadable one or none falls back to 60 s; a
// value about to expire is asked of the API, whose answer is kept a minute.
func TestNodeSnippetReadRule(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	modules := tool(t, filepath.Join(repo, ".cache", "node", "node_modules"), "the AWS SDK for JavaScript")
	app := registry.App{Name: "shop", AppID: "wxreadrule000001", Kind: registry.OfficialAccount, Mode: registry.Classic}
	st := stacktest.New(t, stacktest.Options{}, app)
	st.Publish("shop")
	token, version := st.Published("shop")

	client := ssm.NewFromConfig(st.Cfg)
	metaName := st.Prefix + "/shop/access_token_meta"
	// setMeta writes the meta parameter ("" deletes it), as the refresher publishes it.
	setMeta := func(value string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		if value == "" {
			_, err = client.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(metaName)})
			var nf *ssmtypes.ParameterNotFound
			if errors.As(err, &nf) {
				err = nil
			}
		} else {
			_, err = client.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(metaName), Value: aws.String(value),
				Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)})
		}
		if err != nil {
			t.Fatalf("write %s: %v", metaName, err)
		}
	}
	start := time.Now().Truncate(time.Second)
	meta := func(version int64, expires, rotates time.Duration) string {
		return fmt.Sprintf(`{"version":%d,"expires_at":%q,"rotates_at":%q}`, version,
			start.Add(expires).UTC().Format(time.RFC3339), start.Add(rotates).UTC().Format(time.RFC3339))
	}

	// step: move the snippet's clock on by advance, then ask for the token;
	// reads and requests are what that costs in GetParameters requests and
	// API requests.
	type step struct {
		advance         time.Duration
		reads, requests int
	}
	fallback := []step{{0, 1, 0}, {59 * time.Second, 0, 0}, {2 * time.Second, 1, 0}, {59 * time.Second, 0, 0}}
	tests := []struct {
		name  string
		meta  string
		steps []step
	}{
		{"the meta says the next rotation is in 30 min: one read until just after it, then 60 s (it is late)",
			meta(version, 2*time.Hour, 30*time.Minute), []step{
				{0, 1, 0},
				{10 * time.Minute, 0, 0},
				{20*time.Minute + 59*time.Second, 0, 0}, // rotates_at + 59 s: not yet (60 s + jitter)
				{61 * time.Second, 1, 0},                // rotates_at + 2 min: past the jitter
				{59 * time.Second, 0, 0},                // the meta's rotation is due: 60 s
				{2 * time.Second, 1, 0},
			}},
		{"a meta of another version: 60 s", meta(version+1, 2*time.Hour, 30*time.Minute), fallback},
		{"a meta of an older version: 60 s", meta(version-1, 2*time.Hour, 30*time.Minute), fallback},
		{"an unreadable meta: 60 s", "not json", fallback},
		{"no meta: 60 s", "", fallback},
		{"the rotation is already due: 60 s", meta(version, 2*time.Hour, -time.Minute), fallback},
		{"the value expires within 2 min: asked of the API (no stale value), the answer kept a minute",
			meta(version, 90*time.Second, -time.Minute), []step{{0, 1, 1}, {59 * time.Second, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setMeta(tt.meta)
			p := startNode(t, modules, ".", "testdata/readrule.js", st.APIURL, "shop", st.Prefix, fmt.Sprint(start.UnixMilli()))
			var ack struct{ OK bool }
			if err := p.send("new", &ack); err != nil {
				t.Fatal(err)
			}
			reads := 0
			for i, s := range tt.steps {
				if err := p.send(fmt.Sprintf("advance %d", int(s.advance.Seconds())), &ack); err != nil {
					t.Fatal(err)
				}
				requests := st.Requests.Load()
				var got struct {
					Token, Error string
					Reads, Other int
				}
				if err := p.send("token", &got); err != nil {
					t.Fatal(err)
				}
				switch {
				case got.Error != "":
					t.Fatalf("step %d: %s", i, got.Error)
				case got.Token != token:
					t.Errorf("step %d: token fp %s, want the published fp %s", i, wechat.Fingerprint(got.Token), wechat.Fingerprint(token))
				case got.Other != 0:
					t.Errorf("step %d: %d SSM requests other than GetParameters", i, got.Other)
				}
				if n := got.Reads - reads; n != s.reads {
					t.Errorf("step %d (+%s): %d GetParameters requests, want %d", i, s.advance, n, s.reads)
				}
				if n := int(st.Requests.Load() - requests); n != s.requests {
					t.Errorf("step %d (+%s): %d API requests, want %d", i, s.advance, n, s.requests)
				}
				reads = got.Reads
			}
			if st.BadSignatures.Load() != 0 {
				t.Errorf("%d requests failed the SigV4 check", st.BadSignatures.Load())
			}
		})
	}
}
