package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// tokenReport is what the API answered when the command asked for an app's
// token: its expiry (never the token), or why not and what to do.
type tokenReport struct {
	OK        bool       `json:"ok"`
	Asked     bool       `json:"asked"`
	Version   int64      `json:"version,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Code and Message are the API's error; Errcode WeChat's.
	Code    string  `json:"code,omitempty"`
	Message string  `json:"message,omitempty"`
	Errcode int     `json:"wechat_errcode,omitempty"`
	Advice  *advice `json:"advice,omitempty"`
	Note    string  `json:"note,omitempty"`
}

// askToken asks the API for app's token (fetched only when none valid is
// published) and returns the report and the exit code it means.
func (s *session) askToken(ctx context.Context, be *backend, app string) (tokenReport, ExitCode) {
	if be.api == nil {
		return tokenReport{OK: true, Note: "no API URL is known (pass --api-url), so no token was asked for: the next scheduled run (within a minute) fetches one; see `wxtoken apps show " + app + "`"}, ExitOK
	}
	ans, err := be.api.refresh(ctx, app)
	if err != nil {
		return tokenReport{Asked: true, Code: "unreachable", Message: err.Error(),
			Note: "the next scheduled run (within a minute) fetches the token; see `wxtoken apps show " + app + "`"}, ExitFailed
	}
	r := tokenReport{Asked: true, Version: ans.Version, ExpiresAt: ans.ExpiresAt}
	if ans.Error == nil {
		r.OK = true
		return r, ExitOK
	}
	r.Code, r.Message, r.Errcode = ans.Error.Code, ans.Error.Message, ans.Error.WeChatErrcode
	if r.Errcode != 0 {
		ip, last, class := "", "", ""
		if st, err := be.state(ctx, app); err == nil {
			last, class = st.LastError, st.LastErrorClass
		}
		if isWhitelist(r.Errcode) {
			ip = be.refusedIP(ctx, app, last)
		}
		a := adviceOf(class, r.Errcode, app, ip)
		r.Advice = &a
		return r, ExitWeChat
	}
	switch {
	case ans.Status == 403:
		r.Note = "the API refused your credentials: they need execute-api:Invoke on the API's POST /v1/apps/*/refresh route"
	case ans.Status == 404 && ans.Error.Code == "unknown_app":
		r.Note = "the API does not see the app: is it disabled, or does the API belong to another table?"
	default:
		r.Note = "the next scheduled run (within a minute) retries; see `wxtoken apps show " + app + "`"
	}
	return r, ExitFailed
}

// print writes the report for people.
func (r tokenReport) print(w io.Writer, now time.Time) {
	switch {
	case r.OK && !r.Asked:
		fmt.Fprintf(w, "Token:    not asked for: %s\n", r.Note)
	case r.OK && r.ExpiresAt != nil:
		fmt.Fprintf(w, "Token:    published (version %d), expires %s\n", r.Version, when(*r.ExpiresAt, now))
	case r.OK:
		fmt.Fprintf(w, "Token:    published (version %d), expiry unknown\n", r.Version)
	case r.Advice != nil:
		fmt.Fprintf(w, "Token:    WeChat refused (errcode %d): %s.\nFix:      %s.\n", r.Errcode, r.Advice.Problem, r.Advice.Fix)
	default:
		fmt.Fprintf(w, "Token:    not fetched: %s (%s).\n          %s.\n", r.Message, r.Code, r.Note)
	}
}

// isWhitelist reports whether errcode is a whitelist refusal, which quotes
// the caller's IP.
func isWhitelist(errcode int) bool { return errcode == 40164 || errcode == 61004 || errcode == 60020 }
