// Package rotation is what wxtoken publishes beside each credential so that
// its consumers read SSM only when something can have changed: a non-secret
// sibling parameter, `{credential parameter}_meta` (for example
// `/wechat/shop/access_token_meta`), whose value is the JSON of a Meta. A
// consumer reads both in one GetParameters request (the sibling is a
// String: no KMS request) and keeps the credential until ReadAt, unless
// WeChat rejects it first.
//
// It has no AWS dependency: wxtoken's refresher writes Meta (through
// pkg/tokenstore) and the consumer package pkg/client decides with ReadAt.
package rotation

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Suffix turns a credential's parameter name into its Meta's.
const Suffix = "_meta"

// Name is the Meta parameter of the credential parameter name.
func Name(credential string) string { return credential + Suffix }

// Meta describes the value a credential parameter holds and when it is
// planned to change.
type Meta struct {
	// Version is the credential parameter's Version the Meta describes. A
	// Meta read beside another Version says nothing of that one.
	Version int64 `json:"version"`
	// ExpiresAt is when WeChat's credential expires.
	ExpiresAt time.Time `json:"expires_at"`
	// RotatesAt is when wxtoken's schedule plans to fetch the next one: a
	// new value is published within about a minute after it. Before it,
	// the value changes only unplanned (a forced refresh, another fetcher
	// of a classic token, a caller's refresh after WeChat rejected it).
	RotatesAt time.Time `json:"rotates_at"`
}

// Encode is m's parameter value: its times in whole seconds, rounded down
// (a consumer then reads, and counts the value expired, a little sooner).
func (m Meta) Encode() string {
	b, _ := json.Marshal(struct {
		Version   int64  `json:"version"`
		ExpiresAt string `json:"expires_at"`
		RotatesAt string `json:"rotates_at"`
	}{m.Version, m.ExpiresAt.UTC().Format(time.RFC3339), m.RotatesAt.UTC().Format(time.RFC3339)})
	return string(b)
}

// Decode parses a parameter value written by Encode. A value that does not
// describe a version, or whose times are missing, is an error.
func Decode(s string) (Meta, error) {
	var m Meta
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return Meta{}, fmt.Errorf("rotation: not a wxtoken meta value: %w", err)
	}
	if m.Version <= 0 || m.ExpiresAt.IsZero() || m.RotatesAt.IsZero() {
		return Meta{}, errors.New("rotation: meta value without version, expires_at or rotates_at")
	}
	return m, nil
}

// The consumer's read rule.
const (
	// Lag is how long after RotatesAt a consumer reads again: the schedule
	// runs every minute, so the new value is published by then.
	Lag = time.Minute
	// Jitter spreads a fleet's reads after a rotation over this long, so
	// that they do not all fall in one second of SSM's throughput.
	Jitter = time.Minute
)

// Rule is a consumer's cache rule.
type Rule struct {
	// Fallback is how long a value is kept when nothing better is known
	// (no Meta, a Meta of another version, a rotation that is late).
	Fallback time.Duration
	// Margin: a value is not kept past its expiry less Margin.
	Margin time.Duration
}

// ReadAt is when a consumer that read the credential's version at now,
// with m beside it (ok false: no Meta), reads again: Lag plus jitter (a
// random duration in [0, Jitter)) after m's RotatesAt, never past
// ExpiresAt less the Margin; Fallback after now when m does not describe
// version or its rotation is already due. It is never before now.
func (r Rule) ReadAt(m Meta, ok bool, version int64, now time.Time, jitter time.Duration) time.Time {
	if !ok || m.Version != version || !now.Before(m.RotatesAt) {
		return now.Add(r.Fallback)
	}
	at := m.RotatesAt.Add(Lag + jitter)
	if end := m.ExpiresAt.Add(-r.Margin); end.Before(at) {
		at = end
	}
	if at.Before(now) {
		return now
	}
	return at
}
