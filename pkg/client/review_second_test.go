package client_test

// The second review of issue 15's client (stubbed SSM and API): each test
// reproduces one finding.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/rotation"
	"github.com/wxtoken/wxtoken/pkg/wechat"
)

const tokenParam = client.DefaultPrefix + "/shop/access_token"

// published is what a stubbed SSM holds: the token at version, with a
// rotation meta (expires and rotates after now).
func published(token string, version int64, now time.Time, expires, rotates time.Duration) []ssmtypes.Parameter {
	m := rotation.Meta{Version: version, ExpiresAt: now.Add(expires), RotatesAt: now.Add(rotates)}
	return []ssmtypes.Parameter{
		{Name: aws.String(tokenParam), Value: aws.String(token), Version: version},
		{Name: aws.String(rotation.Name(tokenParam)), Value: aws.String(m.Encode()), Version: 1},
	}
}

// answerBody is an API answer carrying token.
func answerBody(token string, version int64, expires, rotates time.Time, errCode string) string {
	e := ""
	if errCode != "" {
		e = fmt.Sprintf(`"error":{"code":%q,"message":"refused"},`, errCode)
	}
	return fmt.Sprintf(`{%s"app":"shop","access_token":%q,"version":%d,"expires_at":%q,"rotates_at":%q,"refreshed":true}`,
		e, token, version, expires.UTC().Format(time.RFC3339), rotates.UTC().Format(time.RFC3339))
}

// rejecting is a business call WeChat answers 40001 for the tokens in bad.
func rejecting(runs *int, bad ...string) func(context.Context, string) error {
	return func(_ context.Context, tok string) error {
		*runs++
		for _, b := range bad {
			if tok == b {
				return &wechat.Error{Code: 40001, Msg: "invalid credential"}
			}
		}
		return nil
	}
}

// Finding 1: after the parameter is recreated (versions start at 1), the
// API's answer to a rejected token (version 1) replaces the cached token
// of a higher version: that one is known bad. It was dropped for its
// version while the bad one stayed cached until its rotation, so every Do
// was a rejected call and an API request.
func TestRecreatedParameterAnswerIsKept(t *testing.T) {
	now := time.Now()
	srv, requests := stubAPI(t, 200, answerBody("new-token", 1, now.Add(2*time.Hour), now.Add(100*time.Minute), ""), 0)
	c := &client.Client{App: "shop", SSM: &stubSSM{params: published("old-token", 57, now, 2*time.Hour, 100*time.Minute)},
		Endpoint: srv.URL, Now: func() time.Time { return now }}
	runs := 0
	for i := range 5 {
		if err := c.Do(context.Background(), rejecting(&runs, "old-token")); err != nil {
			t.Fatalf("Do #%d: %v", i, err)
		}
		now = now.Add(time.Minute)
	}
	if runs != 6 || requests.Load() != 1 {
		t.Errorf("5 Do calls after the recreation: %d runs, %d API requests; want 6 (one rejected) and 1", runs, requests.Load())
	}
}

// Finding 2: a 429's token is not served past its expiry, however long
// the Retry-After.
func TestRefusalTokenIsNotServedPastItsExpiry(t *testing.T) {
	now := time.Now()
	srv, requests := stubAPI(t, 429, answerBody("token-in-the-429", 3, now.Add(time.Hour), now.Add(40*time.Minute), "refresh_refused"), 36000)
	c := &client.Client{App: "shop", SSM: &stubSSM{}, Endpoint: srv.URL, Now: func() time.Time { return now }}
	if tok, err := c.Token(context.Background()); err != nil || tok != "token-in-the-429" {
		t.Fatalf("Token: %q, %v", tok, err)
	}
	now = now.Add(3 * time.Hour)
	if tok, _ := c.Token(context.Background()); tok == "token-in-the-429" {
		t.Error("3 hours later, past its expiry, Token still serves the 429's token")
	}
	if requests.Load() != 1 {
		t.Errorf("%d API requests within the Retry-After, want 1", requests.Load())
	}
}

// Finding 3: near its expiry with the API failing, the published token,
// still valid, is served (and the API left alone until Retry-After).
func TestNearExpiryWithTheAPIFailingServesTheValidToken(t *testing.T) {
	now := time.Now()
	srv, requests := stubAPI(t, 503, `{"error":{"code":"lock_timeout","message":"try again"}}`, 30)
	sm := &stubSSM{params: published("still-valid", 7, now, 90*time.Second, -30*time.Minute)}
	c := &client.Client{App: "shop", SSM: sm, Endpoint: srv.URL, Now: func() time.Time { return now }}
	for i := range 3 {
		if tok, err := c.Token(context.Background()); err != nil || tok != "still-valid" {
			t.Fatalf("Token #%d: %q, %v; want the published token, valid 90 s more", i, tok, err)
		}
	}
	if requests.Load() != 1 || sm.n.Load() != 1 {
		t.Errorf("3 Token calls: %d API requests, %d SSM reads; want 1 and 1", requests.Load(), sm.n.Load())
	}
}

// Finding 4: while wxtoken refuses to refresh (429 with Retry-After), a
// business call WeChat rejects does not ask the API again on every call.
func TestRejectedTokenRefreshHonoursRetryAfter(t *testing.T) {
	now := time.Now()
	srv, requests := stubAPI(t, 429, answerBody("bad-token", 3, now.Add(time.Hour), now.Add(40*time.Minute), "refresh_refused"), 36000)
	c := &client.Client{App: "shop", SSM: &stubSSM{params: published("bad-token", 3, now, time.Hour, 40*time.Minute)},
		Endpoint: srv.URL, Now: func() time.Time { return now }}
	runs := 0
	for range 10 {
		err := c.Do(context.Background(), rejecting(&runs, "bad-token"))
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != 429 {
			t.Fatalf("Do: %v, want the 429 joined to WeChat's error", err)
		}
		now = now.Add(time.Minute)
	}
	if requests.Load() != 1 {
		t.Errorf("10 rejected calls within a 10-hour Retry-After: %d API requests, want 1", requests.Load())
	}
}

// Finding 9: an SSM error is not retried by every call at once; a cached
// value that has not expired is served meanwhile.
func TestSSMErrorIsNotRetriedAtOnce(t *testing.T) {
	now := time.Now()
	sm := &stubSSM{err: errors.New("ThrottlingException: Rate exceeded")}
	c := &client.Client{App: "shop", SSM: sm, Now: func() time.Time { return now }}
	for i := range 5 {
		if _, err := c.Token(context.Background()); err == nil {
			t.Fatalf("Token #%d: no error from a failing SSM", i)
		}
	}
	if n := sm.n.Load(); n != 1 {
		t.Errorf("5 Token calls at once on a failing SSM: %d reads, want 1", n)
	}
	now = now.Add(client.DefaultSSMRetry)
	_, _ = c.Token(context.Background())
	if n := sm.n.Load(); n != 2 {
		t.Errorf("after DefaultSSMRetry: %d reads, want 2", n)
	}

	// A cached value, still valid, is served while SSM fails.
	sm2 := &stubSSM{params: published("cached", 4, now, 30*time.Minute, 10*time.Second)}
	c2 := &client.Client{App: "shop", SSM: sm2, Now: func() time.Time { return now }}
	if _, err := c2.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	sm2.err = errors.New("ThrottlingException: Rate exceeded")
	now = now.Add(5 * time.Minute) // past its rotation: read again
	if tok, err := c2.Token(context.Background()); err != nil || tok != "cached" {
		t.Errorf("SSM failing, the cached token valid 25 min more: %q, %v; want it served", tok, err)
	}
}

// Finding 10: a read whose value is older than one an API answer cached
// meanwhile hands out the newer one.
func TestReadReturnsTheValueItKeeps(t *testing.T) {
	now := time.Now()
	srv, _ := stubAPI(t, 200, answerBody("newer", 5, now.Add(2*time.Hour), now.Add(100*time.Minute), ""), 0)
	sm := &stubSSM{params: published("older", 4, now, 2*time.Hour, 100*time.Minute), gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	c := &client.Client{App: "shop", SSM: sm, Endpoint: srv.URL, Now: func() time.Time { return now }}
	got := make(chan string, 1)
	go func() {
		tok, _ := c.Token(context.Background())
		got <- tok
	}()
	<-sm.entered // the read is in flight
	if tok, err := c.Refresh(context.Background(), "older"); err != nil || tok != "newer" {
		t.Fatalf("Refresh: %q, %v", tok, err)
	}
	close(sm.gate)
	if tok := <-got; tok != "newer" {
		t.Errorf("the read in flight handed out %q, want the newer token the cache keeps", tok)
	}
}
