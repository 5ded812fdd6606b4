package refresh_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// TestDriftDetected is issue test 9: a token rotated behind wxtoken's back,
// by someone else fetching with the same secret, is detected and reported.
func TestDriftDetected(t *testing.T) {
	tests := []struct {
		mode  registry.Mode
		rogue func(b *bed, a registry.App, secret string)
	}{
		{registry.Classic, func(b *bed, a registry.App, secret string) {
			q := url.Values{"grant_type": {"client_credential"}, "appid": {a.AppID}, "secret": {secret}}
			rogueCall(b.t, http.MethodGet, b.sb.URL+"/cgi-bin/token?"+q.Encode(), "")
			b.sb.Clock().Advance(6 * time.Minute) // past the 5-minute overlap
		}},
		{registry.Stable, func(b *bed, a registry.App, secret string) {
			body, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": a.AppID, "secret": secret, "force_refresh": true})
			rogueCall(b.t, http.MethodPost, b.sb.URL+"/cgi-bin/stable_token", string(body))
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			b := newBed(t, wechattest.Config{})
			a := b.app(appNamed("shop", registry.OfficialAccount, tt.mode))
			events := &eventLog{}
			if rep := mustRefreshDue(t, b.refresher("setup", events.observe)); rep.Count("refreshed") != 1 {
				t.Fatalf("setup: outcomes %+v, want the app refreshed", rep.Outcomes)
			}
			tok, _ := b.published(a.Name)
			if n := events.drifts(); n != 0 {
				t.Errorf("%d drift events before anyone fetched behind wxtoken's back, want 0", n)
			}
			tt.rogue(b, a, "secret-"+a.Name+"-0123456789abcdefghij")
			if b.sb.Check(tok) == 0 {
				t.Fatal("setup: the rogue fetch did not invalidate the published token")
			}
			res, err := b.refresher("api", events.observe).Refresh(ctxT(t), a.Name, tok)
			if err != nil {
				t.Fatal(err)
			}
			if n := events.drifts(); n != 1 {
				t.Errorf("%d drift events after the rotation behind wxtoken's back, want 1 (for the metric)", n)
			}
			if b.sb.Check(res.Token) != 0 {
				t.Error("the refresh after the drift did not publish a valid token")
			}
			st := b.state(a.Name)
			if st.DriftCount != 1 || st.LastDriftAt.IsZero() {
				t.Errorf("state drift_count = %d, last_drift_at %v; want 1 and set", st.DriftCount, st.LastDriftAt)
			}
			if !b.logged(`"level":"ERROR"`, `"event":"drift"`, `"app":"shop"`) {
				t.Errorf("no ERROR log line reports the drift:\n%s", b.logs.String())
			}
			b.saw(tok, res.Token)
		})
	}
}

// eventLog records a refresher's events (Refresher.Observe).
type eventLog struct {
	mu     sync.Mutex
	events []refresh.Event
}

// observe is a refresher option that records its events in l.
func (l *eventLog) observe(r *refresh.Refresher) {
	r.Observe = func(_ context.Context, ev refresh.Event) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.events = append(l.events, ev)
	}
}

// drifts counts the events that reported a drift.
func (l *eventLog) drifts() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.events {
		if ev.Drift {
			n++
		}
	}
	return n
}

// outcomes returns the outcomes of the events so far, in order.
func (l *eventLog) outcomes() []refresh.EventOutcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []refresh.EventOutcome
	for _, ev := range l.events {
		out = append(out, ev.Outcome)
	}
	return out
}

// fetchFunc makes one credential call.
type fetchFunc func(ctx context.Context) (wechat.Token, error)

// hookedWeChat is a WeChat client whose credential calls (Token,
// StableToken, WeComToken) go through fetch, which decides when and under
// which context to make them; other calls go straight to WeChat.
type hookedWeChat struct {
	refresh.WeChat
	fetch func(ctx context.Context, call fetchFunc) (wechat.Token, error)
}

// Token implements refresh.WeChat through h.fetch.
func (h *hookedWeChat) Token(ctx context.Context, appID, secret string) (wechat.Token, error) {
	return h.fetch(ctx, func(ctx context.Context) (wechat.Token, error) { return h.WeChat.Token(ctx, appID, secret) })
}

// StableToken implements refresh.WeChat through h.fetch.
func (h *hookedWeChat) StableToken(ctx context.Context, appID, secret string, force bool) (wechat.Token, error) {
	return h.fetch(ctx, func(ctx context.Context) (wechat.Token, error) {
		return h.WeChat.StableToken(ctx, appID, secret, force)
	})
}

// WeComToken implements refresh.WeChat through h.fetch.
func (h *hookedWeChat) WeComToken(ctx context.Context, corpID, secret string) (wechat.Token, error) {
	return h.fetch(ctx, func(ctx context.Context) (wechat.Token, error) { return h.WeChat.WeComToken(ctx, corpID, secret) })
}

func rogueCall(t *testing.T, method, u, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestErrcodePolicy is issue test 5: the errcode matrix of design.md §4.6.
// Each failure gets the right action, retries are bounded, and the last
// good token stays published and readable.
func TestErrcodePolicy(t *testing.T) {
	const attempts = 3
	tests := []struct {
		name      string
		fault     wechattest.Fault
		wantCalls int           // WeChat token calls in the failing run
		blocked   time.Duration // how long automatic calls pause (0: next run retries)
		errcode   int
	}{
		{"-1 system busy", wechattest.Fault{ErrCode: -1}, attempts, 0, -1},
		// /cgi-bin/token issues a token per call: after a request may have
		// reached WeChat it is not repeated (the next run retries).
		{"HTTP 503", wechattest.Fault{Status: 503}, 1, 0, 0},
		{"dropped connection", wechattest.Fault{Drop: true}, 1, 0, 0},
		{"garbage answer", wechattest.Fault{Body: `{"access_token":"","expires_in":7200}`}, 1, 0, 0},
		{"45011 minute quota", wechattest.Fault{ErrCode: 45011}, 1, time.Minute, 45011},
		{"45009 daily quota", wechattest.Fault{ErrCode: 45009}, 1, 14 * time.Hour, 45009},
		{"40013 invalid appid", wechattest.Fault{ErrCode: 40013}, 1, 30 * time.Minute, 40013},
		{"40001 wrong secret", wechattest.Fault{ErrCode: 40001}, 1, 30 * time.Minute, 40001},
		{"40125 invalid secret", wechattest.Fault{ErrCode: 40125}, 1, 30 * time.Minute, 40125},
		{"40164 IP whitelist", wechattest.Fault{ErrCode: 40164}, 1, 30 * time.Minute, 40164},
		{"61004 IP whitelist", wechattest.Fault{ErrCode: 61004}, 1, 30 * time.Minute, 61004},
		{"40243 frozen secret", wechattest.Fault{ErrCode: 40243}, 1, 30 * time.Minute, 40243},
		{"61024 component account", wechattest.Fault{ErrCode: 61024}, 1, 30 * time.Minute, 61024},
		{"50004 punished", wechattest.Fault{ErrCode: 50004}, 1, 30 * time.Minute, 50004},
		{"89503 risk control", wechattest.Fault{ErrCode: 89503}, 1, 30 * time.Minute, 89503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 2026-11-21 02:00 UTC is 10:00 in Beijing: 14 h to its midnight.
			b := newBed(t, wechattest.Config{})
			a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
			good := publish(t, b, a.Name)
			_, v0 := b.published(a.Name)
			b.sb.Clock().Advance(101 * time.Minute) // due
			tune := func(r *refresh.Refresher) {
				r.WeChat.(*wechat.Client).MaxAttempts = attempts
				r.WeChat.(*wechat.Client).HTTPClient = &http.Client{Timeout: 2 * time.Second}
			}
			sched := b.refresher("scheduler", tune)
			f := tt.fault
			f.Path = wechattest.PathToken
			b.sb.Inject(f)
			before := b.sb.TokenCalls(a.AppID)

			rep := mustRefreshDue(t, sched)
			if rep.Count("failed") != 1 {
				t.Fatalf("outcomes %+v, want the app failed", rep.Outcomes)
			}
			got := b.sb.TokenCalls(a.AppID) - before
			if got != tt.wantCalls {
				t.Errorf("%d token calls in the failing run, want %d", got, tt.wantCalls)
			}
			if tok, v := b.published(a.Name); tok != good || v != v0 {
				t.Errorf("published token changed (version %d -> %d); the last good token must stay", v0, v)
			}
			if b.sb.Check(good) != 0 {
				t.Errorf("the last good token is no longer accepted (errcode %d)", b.sb.Check(good))
			}
			st := b.state(a.Name)
			if st.LastErrCode != tt.errcode || st.LastError == "" {
				t.Errorf("state last_errcode = %d (%q), want %d", st.LastErrCode, st.LastError, tt.errcode)
			}
			now := b.sb.Now()
			switch {
			case tt.blocked == 0 && st.BlockedUntil.After(now):
				t.Errorf("blocked until %v; a retryable failure must be retried on the next run", st.BlockedUntil)
			case tt.blocked > 0 && (!st.BlockedUntil.After(now) || st.BlockedUntil.Sub(now) > tt.blocked):
				t.Errorf("blocked for %v, want (0, %v]", st.BlockedUntil.Sub(now), tt.blocked)
			}
			if tt.errcode == 40164 && !b.logged(`"whitelist_ip":"203.0.113.7"`) {
				t.Error("the IP WeChat quoted is not in the log")
			}

			// The next run, a minute later: blocked codes make no call.
			b.sb.Clock().Advance(time.Second)
			before = b.sb.TokenCalls(a.AppID)
			mustRefreshDue(t, sched)
			calls := b.sb.TokenCalls(a.AppID) - before
			if tt.blocked > 0 && calls != 0 {
				t.Errorf("%d calls during the block, want 0", calls)
			}
			if tt.blocked == 0 && calls == 0 {
				t.Error("no retry on the next run")
			}
			b.sb.ClearFaults()
			b.sb.Clock().Advance(tt.blocked + time.Minute)
			mustRefreshDue(t, sched)
			if tok, _ := b.published(a.Name); tok == good || b.sb.Check(tok) != 0 {
				t.Error("no good token after the fault cleared and the block ended")
			}
		})
	}
}

// TestStalledHolderCannotPublish is issue test 4: a lease holder whose WeChat
// answer comes after its lease ended cannot publish; the next holder's token
// stays published; a late write of an older token is repaired.
func TestStalledHolderCannotPublish(t *testing.T) {
	// Real time here: the lease must really run out while the call stalls.
	b := newBed(t, wechattest.Config{Clock: wechattest.NewClock(t0, 1)})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	b.sb.Inject(wechattest.Fault{Path: wechattest.PathToken, Latency: wechattest.Duration(4 * time.Second), Times: 1})

	// P4: the stalled call must run under a context that ends before the
	// lease does; the commit fence alone would hide a holder that calls
	// WeChat under its caller's context. Both are measured at one instant
	// when the call starts (the sandbox clock runs at real speed).
	var probe struct {
		sync.Mutex
		called, hasDeadline bool
		owner               string
		ctxLeft, leaseLeft  time.Duration
		err                 error
	}
	stalled := b.refresher("stalled", func(r *refresh.Refresher) {
		r.LeaseDuration, r.LeaseMargin = 2*time.Second, 500*time.Millisecond
		r.WeChat.(*wechat.Client).MaxAttempts = 1
		leases := r.Leases
		r.WeChat = &hookedWeChat{WeChat: r.WeChat, fetch: func(ctx context.Context, call fetchFunc) (wechat.Token, error) {
			st, err := leases.Get(ctx, a.Name)
			dl, ok := ctx.Deadline()
			now := b.sb.Now()
			probe.Lock()
			probe.called, probe.hasDeadline, probe.owner, probe.err = true, ok, st.LeaseOwner, err
			probe.ctxLeft, probe.leaseLeft = time.Until(dl), st.LeaseUntil.Sub(now)
			probe.Unlock()
			return call(ctx)
		}}
	})
	done := make(chan error, 1)
	go func() {
		_, err := stalled.Refresh(ctxT(t), a.Name, "")
		done <- err
	}()
	// The next holder comes after the stalled lease ran out.
	time.Sleep(2500 * time.Millisecond)
	next := b.refresher("next")
	res, err := next.Refresh(ctxT(t), a.Name, "")
	if err != nil {
		t.Fatalf("next holder: %v", err)
	}
	if err := <-done; err == nil {
		t.Fatal("the stalled holder reported success")
	}
	probe.Lock()
	switch {
	case !probe.called || probe.err != nil || !strings.HasPrefix(probe.owner, "stalled#"):
		t.Errorf("the stalled holder's WeChat call was not probed under its lease (called %v, owner %q, error %v)", probe.called, probe.owner, probe.err)
	case !probe.hasDeadline || probe.ctxLeft >= probe.leaseLeft:
		t.Errorf("the stalled holder called WeChat under a context with %v left (deadline set: %v) while its lease had %v left; "+
			"a holder's context must end before its lease (P4)", probe.ctxLeft.Round(time.Millisecond), probe.hasDeadline, probe.leaseLeft.Round(time.Millisecond))
	}
	probe.Unlock()
	tok, v := b.published(a.Name)
	if tok != res.Token || v != 1 {
		t.Errorf("published version %d is not the next holder's token", v)
	}
	if st := b.state(a.Name); st.Generation != 1 || st.Version != 1 {
		t.Errorf("generation %d version %d, want 1 and 1", st.Generation, st.Version)
	}

	// An out-of-order write of an older token (what a writer that slipped
	// past every guard would do) is repaired by the next run.
	older := "an-older-token-" + strings.Repeat("x", 40)
	if _, err = b.tokens().Put(context.Background(), "shop", older); err != nil {
		t.Fatal(err)
	}
	mustRefreshDue(t, b.refresher("scheduler", func(r *refresh.Refresher) { r.CheckEvery = time.Minute }))
	if tok, v := b.published(a.Name); tok != res.Token || v != 3 {
		t.Errorf("after the repair run: version %d; want the committed token back as version 3", v)
	}
	if !b.logged(`"event":"repaired"`) {
		t.Error("the repair is not logged")
	}
	b.saw(res.Token)
}

// TestStalledAnswerIsFenced runs the fenced branch of a refresh: WeChat's
// answer, made deaf to cancellation, comes back after the holder's lease ran
// out (and, in one case, after another holder took over and published).
// The late holder's commit is refused with lease.ErrFenced, its token is
// never published, and the published Version is not moved by it.
func TestStalledAnswerIsFenced(t *testing.T) {
	for _, takeover := range []bool{false, true} {
		name := "lease ran out"
		if takeover {
			name = "another holder took over"
		}
		t.Run(name, func(t *testing.T) {
			b := newBed(t, wechattest.Config{}) // frozen clock: the test moves it
			a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
			next := b.refresher("next")
			events := &eventLog{}
			var late, nextTok string
			var nextErr error
			stalled := b.refresher("stalled", events.observe, func(r *refresh.Refresher) {
				r.WeChat = &hookedWeChat{WeChat: r.WeChat, fetch: func(ctx context.Context, call fetchFunc) (wechat.Token, error) {
					tok, err := call(context.WithoutCancel(ctx))
					late = tok.AccessToken
					// The answer arrives after the lease ended.
					b.sb.Clock().Advance(refresh.DefaultLeaseDuration + time.Second)
					if takeover {
						var res refresh.Result
						res, nextErr = next.Refresh(context.WithoutCancel(ctx), a.Name, "")
						nextTok = res.Token
					}
					return tok, err
				}}
			})
			_, err := stalled.Refresh(ctxT(t), a.Name, "")
			b.saw(late, nextTok)
			if late == "" {
				t.Fatal("setup: the stalled holder got no token from WeChat")
			}
			if !errors.Is(err, lease.ErrFenced) {
				t.Errorf("late holder: got %v, want lease.ErrFenced", err)
			}
			if got := events.outcomes(); len(got) != 1 || got[0] != refresh.OutcomeFenced {
				t.Errorf("late holder's events %v, want [%s]", got, refresh.OutcomeFenced)
			}
			pub, v, perr := b.tokens().Get(ctxT(t), a.Name)
			b.saw(pub)
			st := b.state(a.Name)
			if !takeover {
				if !errors.Is(perr, tokenstore.ErrNotFound) || st.Generation != 0 {
					t.Errorf("after the fenced answer: published version %d (error %v), generation %d; want nothing published", v, perr, st.Generation)
				}
				return
			}
			if nextErr != nil {
				t.Fatalf("next holder: %v", nextErr)
			}
			if perr != nil || pub != nextTok || pub == late || v != 1 {
				t.Errorf("published version %d (error %v), next holder's token: %v, late token: %v; want the next holder's token as version 1",
					v, perr, pub == nextTok, pub == late)
			}
			if st.Generation != 1 || st.Fingerprint != wechat.Fingerprint(nextTok) {
				t.Errorf("generation %d fingerprint %s, want 1 and the next holder's %s", st.Generation, st.Fingerprint, wechat.Fingerprint(nextTok))
			}
		})
	}
}

// TestLeaseFencing checks the DynamoDB conditions under the refresher: a
// holder whose lease ran out can neither commit, confirm over a newer
// generation, nor release the new holder's lease.
func TestLeaseFencing(t *testing.T) {
	b := newBed(t, wechattest.Config{})
	tbl := b.leases()
	ctx := ctxT(t)
	now := t0
	st, err := tbl.Acquire(ctx, "shop", "A", now, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Acquire(ctx, "shop", "B", now.Add(30*time.Second), now.Add(90*time.Second)); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("second acquire inside the lease: %v, want ErrHeld", err)
	}
	later := now.Add(61 * time.Second)
	if _, err := tbl.Acquire(ctx, "shop", "B", later, later.Add(time.Minute)); err != nil {
		t.Fatalf("acquire after expiry: %v", err)
	}
	c := lease.Commit{Fingerprint: "aaaa", Mode: "classic", FetchedAt: now, ExpiresAt: now.Add(2 * time.Hour)}
	if err := tbl.Commit(ctx, "shop", "A", st.Generation, later, c); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("commit by the expired holder: %v, want ErrFenced", err)
	}
	if err := tbl.Release(ctx, "shop", "A", later, lease.Fields{}); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("release by the expired holder: %v, want ErrFenced", err)
	}
	c.Fingerprint = "bbbb"
	if err := tbl.Commit(ctx, "shop", "B", 0, later, c); err != nil {
		t.Fatalf("commit by the holder: %v", err)
	}
	if err := tbl.Commit(ctx, "shop", "B", 0, later, c); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("second commit from the same generation: %v, want ErrFenced", err)
	}
	if err := tbl.Confirm(ctx, "shop", 0, 7, later); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("confirm of an old generation: %v, want ErrFenced", err)
	}
	got, _ := tbl.Get(ctx, "shop")
	if got.Generation != 1 || got.Fingerprint != "bbbb" || got.LeaseOwner != "B" {
		t.Errorf("state %+v, want generation 1 by B", got)
	}
}
