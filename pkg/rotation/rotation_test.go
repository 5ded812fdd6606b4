package rotation

import (
	"strings"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	exp := time.Date(2026, 12, 1, 21, 47, 0, 0, time.UTC)
	m := Meta{Version: 12, ExpiresAt: exp, RotatesAt: exp.Add(-20 * time.Minute)}
	s := m.Encode()
	if want := `{"version":12,"expires_at":"2026-12-01T21:47:00Z","rotates_at":"2026-12-01T21:27:00Z"}`; s != want {
		t.Fatalf("Encode = %s, want %s", s, want)
	}
	got, err := Decode(s)
	if err != nil || got != m {
		t.Fatalf("Decode(Encode) = %+v, %v; want %+v", got, err, m)
	}
	for _, bad := range []string{"", "token-like-value", `{"version":0,"expires_at":"2026-12-01T21:47:00Z","rotates_at":"2026-12-01T21:27:00Z"}`, `{"version":3}`} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("Decode's error quotes the value: %v", err)
		}
	}
	if Name("/wechat/shop/access_token") != "/wechat/shop/access_token_meta" {
		t.Error(Name("/wechat/shop/access_token"))
	}
}

func TestReadAt(t *testing.T) {
	now := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	rule := Rule{Fallback: time.Minute, Margin: 2 * time.Minute}
	classic := Meta{Version: 7, ExpiresAt: now.Add(100 * time.Minute), RotatesAt: now.Add(80 * time.Minute)}
	stable := Meta{Version: 7, ExpiresAt: now.Add(100 * time.Minute), RotatesAt: now.Add(100*time.Minute - 270*time.Second)}
	tests := []struct {
		name    string
		m       Meta
		ok      bool
		version int64
		jitter  time.Duration
		want    time.Time
	}{
		{"no meta: the fallback", Meta{}, false, 7, 0, now.Add(time.Minute)},
		{"a meta of another version: the fallback", classic, true, 8, 0, now.Add(time.Minute)},
		{"classic: after the rotation, plus the lag", classic, true, 7, 0, now.Add(81 * time.Minute)},
		{"the jitter adds", classic, true, 7, 45 * time.Second, now.Add(81*time.Minute + 45*time.Second)},
		{"stable: inside the final window, before the margin", stable, true, 7, 59 * time.Second, now.Add(100*time.Minute - 270*time.Second + 119*time.Second)},
		{"capped at the expiry less the margin", Meta{Version: 7, ExpiresAt: now.Add(100 * time.Minute), RotatesAt: now.Add(99 * time.Minute)}, true, 7, 0, now.Add(98 * time.Minute)},
		{"a late rotation: the fallback", Meta{Version: 7, ExpiresAt: now.Add(10 * time.Minute), RotatesAt: now.Add(-time.Second)}, true, 7, 0, now.Add(time.Minute)},
		{"rotation due exactly now: the fallback", Meta{Version: 7, ExpiresAt: now.Add(10 * time.Minute), RotatesAt: now}, true, 7, 0, now.Add(time.Minute)},
		{"inside the margin already: now", Meta{Version: 7, ExpiresAt: now.Add(time.Minute), RotatesAt: now.Add(30 * time.Second)}, true, 7, 0, now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rule.ReadAt(tt.m, tt.ok, tt.version, now, tt.jitter); !got.Equal(tt.want) {
				t.Errorf("ReadAt = %v, want %v", got.Sub(now), tt.want.Sub(now))
			}
		})
	}
}
