package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/wxtoken/wxtoken/pkg/testsupport/awscalls"
)

// The recording proxy forwards a request unchanged (body included) and
// records it only when a function identity signed it.
func TestRecordingProxyForwardsAndRecords(t *testing.T) {
	var got []byte
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = io.WriteString(w, `{"Item":{}}`)
	}))
	defer engine.Close()
	rec := &awscalls.Recorder{}
	p, err := startRecording(engine.URL, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	send := func(key string, body string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, p.url+"/", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+key+"/20261201/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		return string(answer)
	}
	body := `{"TableName":"t-1","Key":{"pk":{"S":"app#shop"}}}`
	if answer := send(string(awscalls.API), body); answer != `{"Item":{}}` || string(got) != body {
		t.Fatalf("forwarded %q and answered %q; want the body unchanged and the engine's answer", got, answer)
	}
	send("test", body) // the tests' own calls are not recorded

	calls := rec.Calls()
	if len(calls) != 1 || calls[0].Function != string(awscalls.API) || calls[0].Action != "dynamodb:GetItem" || calls[0].Count != 1 {
		t.Fatalf("recorded %+v; want one dynamodb:GetItem by %s", calls, awscalls.API)
	}
	path := filepath.Join(t.TempDir(), "calls", "aws-calls.json")
	if err := writeCalls(path, rec); err != nil {
		t.Fatal(err)
	}
}

// A body larger than what is read for recording (an S3 upload through moto)
// still reaches the engine whole.
func TestRecordingProxyForwardsLargeBodiesWhole(t *testing.T) {
	var n int64
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ = io.Copy(io.Discard, r.Body)
	}))
	defer engine.Close()
	p, err := startRecording(engine.URL, &awscalls.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	size := int64(maxRecordedBody + 1000)
	req, err := http.NewRequest(http.MethodPut, p.url+"/bucket/key.zip", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n != size {
		t.Fatalf("the engine got %d bytes, want %d", n, size)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
