package wechattest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// Fault makes matching calls misbehave instead of (or, for Latency alone,
// before) answering normally. Faults are checked in the order they were
// injected; the first that matches and fires applies.
type Fault struct {
	// Path limits the fault to one WeChat path ("/cgi-bin/token"); empty
	// matches every WeChat path (never the admin paths).
	Path string `json:"path,omitempty"`
	// AppID limits the fault to calls about one app; empty matches all.
	AppID string `json:"appid,omitempty"`

	// ErrCode answers HTTP 200 with this errcode (and ErrMsg, or a default
	// message), as WeChat does.
	ErrCode int    `json:"errcode,omitempty"`
	ErrMsg  string `json:"errmsg,omitempty"`
	// Status answers this HTTP status with a short plain-text body.
	Status int `json:"status,omitempty"`
	// Body answers HTTP 200 with this raw body (malformed JSON, an HTML
	// page, an oversized document), with ContentType (default text/plain).
	Body        string `json:"body,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	// Drop closes the connection without answering.
	Drop bool `json:"drop,omitempty"`
	// Latency delays the answer (real time, not sandbox time). A fault with
	// only Latency delays the normal answer.
	Latency Duration `json:"latency,omitempty"`

	// Times applies the fault to the next Times matching calls; 0 means
	// until ClearFaults.
	Times int `json:"times,omitempty"`
	// Fraction applies the fault to this fraction of matching calls
	// (0 < Fraction < 1); 0 means every matching call.
	Fraction float64 `json:"fraction,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as "1.5s".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler; it accepts "1.5s" or a number of
// nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("wechattest: duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("wechattest: duration must be a string like \"1.5s\" or nanoseconds: %s", b)
	}
	*d = Duration(n)
	return nil
}

type faultState struct {
	Fault
	left int // remaining firings when Times > 0
}

// Inject adds a fault.
func (s *Sandbox) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultState{Fault: f, left: f.Times})
}

// ClearFaults removes every fault.
func (s *Sandbox) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// ClearFaultsOf removes the faults limited to appID (Fault.AppID), leaving
// the others: one test's or one runbook step's fix ends its own faults only.
func (s *Sandbox) ClearFaultsOf(appID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.faults[:0]
	for _, f := range s.faults {
		if f.AppID != appID {
			kept = append(kept, f)
		}
	}
	s.faults = kept
}

// takeFault returns the fault that fires for this call, if any, consuming one
// of its Times.
func (s *Sandbox) takeFault(path, appID string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Path != "" && f.Path != path || f.AppID != "" && f.AppID != appID {
			continue
		}
		if f.Fraction > 0 && f.Fraction < 1 && rand.Float64() >= f.Fraction {
			continue
		}
		fired := f.Fault
		if f.Times > 0 {
			f.left--
			if f.left <= 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		return &fired
	}
	return nil
}

// apply performs the fault and reports whether it answered the call (false:
// latency only, answer normally).
func (f *Fault) apply(w http.ResponseWriter, r *http.Request) bool {
	if f.Latency > 0 {
		t := time.NewTimer(time.Duration(f.Latency))
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	switch {
	case f.Drop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler) // closes the connection without an answer
	case f.Status != 0:
		http.Error(w, http.StatusText(f.Status), f.Status)
		return true
	case f.Body != "":
		ct := f.ContentType
		if ct == "" {
			ct = "text/plain"
		}
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write([]byte(f.Body))
		return true
	case f.ErrCode != 0:
		msg := f.ErrMsg
		if msg == "" {
			msg = defaultErrMsg[f.ErrCode]
		}
		if msg == "" {
			msg = "injected error"
		}
		writeErr(w, f.ErrCode, msg)
		return true
	}
	return false
}

// defaultErrMsg is WeChat's wording for the codes tests inject most.
var defaultErrMsg = map[int]string{
	-1:    "system error",
	40001: "invalid credential, access_token is invalid or not latest",
	40013: "invalid appid",
	40125: "invalid appsecret",
	40164: "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist",
	40243: "AppSecret is frozen, please unfreeze it on mp.weixin.qq.com",
	45009: "reach max api daily quota limit",
	45011: "api minute-quota reach limit  mustslower  retry next minute",
	50004: "user not allow to use accesstoken, maybe for punishment",
	61004: "access clientip [203.0.113.8] is not registered, not in ip-white-list",
	61024: "must use api(api_component_token) to get token for component acct",
	89503: "此次调用需要管理员确认，请耐心等候",
}
