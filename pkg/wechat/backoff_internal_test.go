package wechat

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestBackoffGrowsAndIsCapped checks the documented formula: the delay before
// retry n lies in (0, min(MaxDelay, BaseDelay·2^n)], and over many draws it
// covers that whole range (full jitter), not a fixed or narrower one.
func TestBackoffGrowsAndIsCapped(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		client Client
		n      int
		want   time.Duration // the ceiling
	}{
		{"defaults retry 0", Client{}, 0, 200 * ms},
		{"defaults retry 1", Client{}, 1, 400 * ms},
		{"defaults retry 2", Client{}, 2, 800 * ms},
		{"defaults retry 3", Client{}, 3, 1600 * ms},
		{"defaults retry 4", Client{}, 4, 3200 * ms},
		{"defaults retry 5 capped", Client{}, 5, 5 * time.Second},
		{"defaults retry 6 capped", Client{}, 6, 5 * time.Second},
		{"defaults shift overflow capped", Client{}, 70, 5 * time.Second},
		{"custom retry 0", Client{BaseDelay: 10 * ms, MaxDelay: 70 * ms}, 0, 10 * ms},
		{"custom retry 1", Client{BaseDelay: 10 * ms, MaxDelay: 70 * ms}, 1, 20 * ms},
		{"custom retry 2", Client{BaseDelay: 10 * ms, MaxDelay: 70 * ms}, 2, 40 * ms},
		{"custom retry 3 capped", Client{BaseDelay: 10 * ms, MaxDelay: 70 * ms}, 3, 70 * ms},
		{"custom retry 20 capped", Client{BaseDelay: 10 * ms, MaxDelay: 70 * ms}, 20, 70 * ms},
		{"negative fields take defaults", Client{BaseDelay: -1, MaxDelay: -1}, 1, 400 * ms},
	}
	const draws = 4000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sum, highest time.Duration
			distinct := map[time.Duration]bool{}
			for range draws {
				got := tt.client.backoff(tt.n)
				if got <= 0 || got > tt.want {
					t.Fatalf("backoff(%d) = %v, want in (0, %v]", tt.n, got, tt.want)
				}
				sum += got
				highest = max(highest, got)
				distinct[got] = true
			}
			// Uniform on (0, ceiling]: the mean is ceiling/2 (its standard
			// error over 4000 draws is under 0.5% of the ceiling), and the
			// largest draw comes close to the ceiling.
			mean := sum / draws
			if lo, hi := tt.want*4/10, tt.want*6/10; mean < lo || mean > hi {
				t.Errorf("mean of %d draws of backoff(%d) = %v, want about %v (full jitter up to the ceiling)", draws, tt.n, mean, tt.want/2)
			}
			if highest < tt.want*9/10 {
				t.Errorf("largest of %d draws of backoff(%d) = %v, want near the ceiling %v", draws, tt.n, highest, tt.want)
			}
			if len(distinct) < draws/2 {
				t.Errorf("backoff(%d) gave %d distinct values in %d draws, want jitter", tt.n, len(distinct), draws)
			}
		})
	}
}

// TestBackoffOfTinyBaseDelay pins the lower edge: a ceiling of 1 ns leaves
// exactly one legal delay, never zero.
func TestBackoffOfTinyBaseDelay(t *testing.T) {
	c := Client{BaseDelay: 1, MaxDelay: 1}
	for n := range 5 {
		if got := c.backoff(n); got != 1 {
			t.Fatalf("backoff(%d) with a 1ns ceiling = %v, want 1ns", n, got)
		}
	}
}

// TestSleepWaitsTheBackoffOfItsRetry ties sleep to backoff(n): retry 0 of a
// 1µs base delay sleeps at once, while retry 35 draws from a ceiling of
// MaxDelay (10⁵ h), which would overrun the context's deadline, so sleep gives
// up at once instead of waiting.
func TestSleepWaitsTheBackoffOfItsRetry(t *testing.T) {
	c := &Client{BaseDelay: time.Microsecond, MaxDelay: 100000 * time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !c.sleep(ctx, 0) {
		t.Fatal("sleep(0) with a 1µs ceiling = false, want true")
	}
	start := time.Now()
	if c.sleep(ctx, 35) {
		t.Fatal("sleep(35) with a 100000h ceiling and a 5s deadline = true, want false")
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("sleep(35) took %v before giving up, want no wait", took)
	}
}

func TestDefaultBaseURLs(t *testing.T) {
	want := []string{
		"https://api.weixin.qq.com",
		"https://api2.weixin.qq.com",
		"https://sh.api.weixin.qq.com",
		"https://sz.api.weixin.qq.com",
		"https://hk.api.weixin.qq.com",
	}
	if !slices.Equal(DefaultBaseURLs, want) {
		t.Errorf("DefaultBaseURLs = %q, want %q", DefaultBaseURLs, want)
	}
	if got := (&Client{}).baseURLs(); !slices.Equal(got, want) {
		t.Errorf("zero Client's base URLs = %q, want %q", got, want)
	}
	wantWeCom := []string{"https://qyapi.weixin.qq.com"}
	if !slices.Equal(DefaultWeComBaseURLs, wantWeCom) {
		t.Errorf("DefaultWeComBaseURLs = %q, want %q", DefaultWeComBaseURLs, wantWeCom)
	}
	if got := (&Client{}).weComBaseURLs(); !slices.Equal(got, wantWeCom) {
		t.Errorf("zero Client's WeCom base URLs = %q, want %q", got, wantWeCom)
	}
}

// TestDefaultFailoverOrder runs a Client with no BaseURLs against a local TLS
// server that every WeChat host name resolves to, answering 503 each time, and
// checks the hosts the client asked, in order.
func TestDefaultFailoverOrder(t *testing.T) {
	var (
		mu    sync.Mutex
		hosts []string
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	transport := &http.Transport{
		// Every host name reaches the local server: no request leaves the machine.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the test server's certificate names no WeChat host
	}
	t.Cleanup(transport.CloseIdleConnections)

	tests := []struct {
		name      string
		call      func(ctx context.Context, c *Client) error
		attempts  int
		wantHosts []string
	}{
		{"stable token", func(ctx context.Context, c *Client) error {
			_, err := c.StableToken(ctx, "wx0000000000000000", "not-a-real-secret", false)
			return err
		}, 6, []string{
			"api.weixin.qq.com", "api2.weixin.qq.com",
			"sh.api.weixin.qq.com", "sz.api.weixin.qq.com", "hk.api.weixin.qq.com",
			"api.weixin.qq.com", // wraps around
		}},
		{"wecom gettoken", func(ctx context.Context, c *Client) error {
			_, err := c.WeComToken(ctx, "ww0000000000000000", "not-a-real-secret")
			return err
		}, 2, []string{"qyapi.weixin.qq.com", "qyapi.weixin.qq.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			hosts = nil
			mu.Unlock()
			c := &Client{
				HTTPClient:  &http.Client{Transport: transport, Timeout: 5 * time.Second},
				MaxAttempts: tt.attempts,
				BaseDelay:   time.Microsecond,
				MaxDelay:    time.Microsecond,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tt.call(ctx, c); Classify(err) != ClassRetryable {
				t.Fatalf("error %v of class %v, want a retryable one", err, Classify(err))
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(hosts, tt.wantHosts) {
				t.Errorf("hosts asked = %q, want %q", hosts, tt.wantHosts)
			}
		})
	}
}
