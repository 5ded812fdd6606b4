package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/wxtoken/wxtoken/pkg/testsupport/awscalls"
)

// maxRecordedBody bounds what the recording proxy reads of a request body
// to find the resources it names (the JSON requests it records are far
// smaller); the rest is forwarded without being read.
const maxRecordedBody = 16 << 20

// recordingProxy forwards every request to one engine unchanged and records
// the calls that the functions' code signs (pkg/testsupport/awscalls).
type recordingProxy struct {
	url string
	srv *http.Server
}

// startRecording serves a recording proxy for target on a free loopback port.
func startRecording(target string, rec *awscalls.Recorder) (*recordingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("recording proxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("recording proxy: listen: %w", err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	rp.Transport = tr
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			// Record from the first maxRecordedBody bytes; forward the whole
			// body unchanged (S3 uploads through moto can be larger).
			head, err := io.ReadAll(io.LimitReader(r.Body, maxRecordedBody))
			if err != nil {
				r.Body.Close()
				http.Error(w, "recording proxy: read body: "+err.Error(), http.StatusBadGateway)
				return
			}
			rec.Add(r.Header.Get("Authorization"), r.Header.Get("X-Amz-Target"), head)
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
		}
		rp.ServeHTTP(w, r)
	})
	p := &recordingProxy{url: "http://" + ln.Addr().String(), srv: &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second}}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *recordingProxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
}

// writeCalls writes what rec recorded to path as JSON (infra/local/iam reads it).
func writeCalls(path string, rec *awscalls.Recorder) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write recorded calls: %w", err)
	}
	var buf bytes.Buffer
	if err := rec.WriteJSON(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write recorded calls: %w", err)
	}
	return nil
}

var errNoCalls = errors.New("no call of the functions' code was recorded: the tests no longer sign with awscalls identities")
