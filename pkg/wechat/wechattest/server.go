package wechattest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"
)

// Server is a Sandbox listening on a loopback port, like httptest.Server.
type Server struct {
	*Sandbox
	// URL is the base URL, http://127.0.0.1:port, to use for every WeChat
	// and WeCom domain.
	URL string
	srv *httptest.Server
}

// NewServer starts a sandbox with cfg and apps on a loopback port. Close it
// when done.
func NewServer(cfg Config, apps ...App) *Server {
	sb := New(cfg, apps...)
	srv := httptest.NewServer(sb)
	return &Server{Sandbox: sb, URL: srv.URL, srv: srv}
}

// Close shuts the server down, closing open connections.
func (s *Server) Close() { s.srv.Close() }

// Stats are the sandbox's counters.
type Stats struct {
	// Now is the sandbox time.
	Now time.Time `json:"now"`
	// Calls counts calls by path and by the appid they were about ("" when
	// none could be told, e.g. a garbage token).
	Calls map[string]map[string]int `json:"calls"`
	// TokensIssued counts tokens issued per appid, every API together.
	TokensIssued map[string]int `json:"tokens_issued"`
	// ValidTokens counts the tokens per appid the business endpoint would
	// accept right now.
	ValidTokens map[string]int `json:"valid_tokens"`
}

// Stats returns a snapshot of the counters.
func (s *Sandbox) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	st := Stats{Now: now, Calls: map[string]map[string]int{}, TokensIssued: map[string]int{}, ValidTokens: map[string]int{}}
	for path, m := range s.calls {
		c := map[string]int{}
		for k, v := range m {
			c[k] = v
		}
		st.Calls[path] = c
	}
	for id, a := range s.apps {
		st.TokensIssued[id] = a.tokensIssued
		st.ValidTokens[id] = 0
	}
	for _, r := range s.tokens {
		if r.validAt(now) {
			st.ValidTokens[r.appID]++
		}
	}
	return st
}

// Calls returns how many calls reached path about appID (fault-injected ones
// included).
func (s *Sandbox) Calls(path, appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path][appID]
}

// TokenCalls returns how many credential calls (token, stable_token and
// gettoken) reached the sandbox about appID.
func (s *Sandbox) TokenCalls(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[PathToken][appID] + s.calls[PathStableToken][appID] + s.calls[PathGetToken][appID]
}

// TokensIssued returns how many tokens the sandbox issued for appID.
func (s *Sandbox) TokensIssued(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.apps[appID]; ok {
		return a.tokensIssued
	}
	return 0
}

// Current returns the latest token issued for appID by api and when it
// expires, or "" when none was issued. It is for tests that check what a
// client stored; WeChat has no such call.
func (s *Sandbox) Current(appID string, api API) (string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.apps[appID]; ok {
		if r := a.current[api]; r != nil {
			return r.token, r.expiresAt
		}
	}
	return "", time.Time{}
}

// Issued returns every token the sandbox has issued, for tests that make
// sure no token leaked into logs; WeChat has no such call.
func (s *Sandbox) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for tok := range s.tokens {
		out = append(out, tok)
	}
	return out
}

// Check answers what the business endpoint would answer for token right now:
// 0 when accepted, else the errcode (41001, 40014, 42001, 40001).
func (s *Sandbox) Check(token string) int {
	if token == "" {
		return 41001
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.tokens[token]
	now := s.Now()
	switch {
	case !ok:
		return 40014
	case !now.Before(r.expiresAt):
		return 42001
	case !r.validAt(now):
		return 40001
	}
	return 0
}

func (s *Sandbox) serveAdmin(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, format string, args ...any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
	}
	decode := func(v any) bool {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			fail(http.StatusBadRequest, "bad JSON body: %v", err)
			return false
		}
		return true
	}
	switch r.Method + " " + r.URL.Path {
	case "GET " + AdminPrefix + "stats":
		writeJSON(w, s.Stats())
	case "POST " + AdminPrefix + "faults":
		var f Fault
		if decode(&f) {
			s.Inject(f)
			writeJSON(w, map[string]any{"ok": true})
		}
	case "DELETE " + AdminPrefix + "faults":
		if appID := r.URL.Query().Get("appid"); appID != "" {
			s.ClearFaultsOf(appID)
		} else {
			s.ClearFaults()
		}
		writeJSON(w, map[string]any{"ok": true})
	case "POST " + AdminPrefix + "clock":
		var c struct {
			Advance Duration `json:"advance"`
			Speed   *float64 `json:"speed"`
		}
		if decode(&c) {
			if c.Advance != 0 {
				s.Clock().Advance(time.Duration(c.Advance))
			}
			if c.Speed != nil {
				s.Clock().SetSpeed(*c.Speed)
			}
			writeJSON(w, map[string]any{"now": s.Now(), "speed": s.Clock().Speed()})
		}
	case "GET " + AdminPrefix + "tickets/check":
		// What a WeChat client's wx.config would find of a ticket:
		// ?appid=...&type=jsapi|wx_card|wecom_jsapi|agent_config&ticket=...
		q := r.URL.Query()
		code := s.CheckTicket(q.Get("appid"), TicketType(q.Get("type")), q.Get("ticket"))
		writeJSON(w, map[string]any{"errcode": code})
	case "POST " + AdminPrefix + "apps":
		var a App
		if !decode(&a) {
			return
		}
		if a.AppID == "" || a.Secret == "" {
			fail(http.StatusBadRequest, "appid and secret are required")
			return
		}
		switch a.Kind {
		case "":
			a.Kind = OfficialAccount
		case OfficialAccount, MiniProgram, WeCom:
		default:
			fail(http.StatusBadRequest, "kind %q: want offiaccount, miniprogram or wecom", a.Kind)
			return
		}
		s.AddApp(a)
		writeJSON(w, map[string]any{"ok": true})
	default:
		fail(http.StatusNotFound, "no admin route %s %s", r.Method, r.URL.Path)
	}
}
