package refresh_test

// Tickets in the randomized model check (model_test.go): the model's account
// of each app's tickets, what the front records of the ticket calls, the
// faults of the ticket paths, the ticket claim burst and the ticket
// invariants. A ticket is a credential of its own (docs/design.md,
// Tickets): its checks mirror the token's, with the premises a ticket adds
// (it needs the token; WeChat has no call that checks it).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// modelTicketRunCalls bounds one credential's ticket calls reaching WeChat
// in one scheduled run: a call WeChat refuses for the token (an errcode is
// not retried), then one call with the new token, tried by the client at
// most DefaultMaxAttempts times; Go's transport may send each try twice (a
// GET on a pooled connection closed without an answer is replayed once).
const modelTicketRunCalls = (1 + wechat.DefaultMaxAttempts) * 2

// modelTicket is the model's account of one ticket of an app.
type modelTicket struct {
	t    registry.Ticket
	key  string                // its credential key ("app#jsapi")
	typ  wechattest.TicketType // the sandbox's name of it
	path string                // the WeChat path that issues it
	// lastPubSeq is the issue order of the newest ticket SSM held, pubs
	// every ticket once published (for claims with an older one).
	lastPubSeq int
	pubs       []string
	// Causes the premise of availability excludes, as the token's.
	healthyFrom  int  // the step the last cause of its own ended
	quotaPending bool // a 45009 pause not yet ended by a new secret
}

func newModelTicket(spec modelAppSpec, t registry.Ticket) *modelTicket {
	tk := &modelTicket{t: t, key: registry.Credential{App: spec.Name, Ticket: t}.Key()}
	switch {
	case spec.Kind == registry.WeCom && t == registry.TicketAgentConfig:
		tk.typ, tk.path = wechattest.TicketAgentConfig, wechattest.PathWeComAgentTicket
	case spec.Kind == registry.WeCom:
		tk.typ, tk.path = wechattest.TicketWeComJSAPI, wechattest.PathWeComJSAPITicket
	case t == registry.TicketCard:
		tk.typ, tk.path = wechattest.TicketCard, wechattest.PathTicket
	default:
		tk.typ, tk.path = wechattest.TicketJSAPI, wechattest.PathTicket
	}
	return tk
}

// modelTicketIssue is a ticket the sandbox answered with, in issue order.
type modelTicketIssue struct {
	seq   int
	appid string
	typ   wechattest.TicketType
}

// modelTicketCall is a ticket call the front is serving.
type modelTicketCall struct {
	appid, path string
	typ         wechattest.TicketType
}

// ticketCall returns the ticket call r is (nil for another call), counted
// by the account of the access token it carries and the ticket type.
func (w *modelWorld) ticketCall(r *http.Request) *modelTicketCall {
	q := r.URL.Query()
	var typ wechattest.TicketType
	switch r.URL.Path {
	case wechattest.PathTicket, wechattest.PathWeComAgentTicket:
		typ = wechattest.TicketType(q.Get("type"))
	case wechattest.PathWeComJSAPITicket:
		typ = wechattest.TicketWeComJSAPI
	default:
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c := &modelTicketCall{appid: w.issued[q.Get("access_token")].appid, path: r.URL.Path, typ: typ}
	w.tcalls[c.appid+" "+string(typ)]++
	return c
}

// ticketAnswer records the ticket in the sandbox's answer to c (one WeChat
// really issued: an injected body is not), and reports whether the answer
// is to be lost (a ticket-path lost-answer fault).
func (w *modelWorld) ticketAnswer(c *modelTicketCall, body []byte) bool {
	if c == nil {
		return false
	}
	var ans struct {
		Ticket string `json:"ticket"`
	}
	if json.Unmarshal(body, &ans) != nil || ans.Ticket == "" || w.sb.CheckTicket(c.appid, c.typ, ans.Ticket) != 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.tissued[ans.Ticket]; !ok {
		w.tseq++
		w.tissued[ans.Ticket] = modelTicketIssue{seq: w.tseq, appid: c.appid, typ: c.typ}
	}
	return w.lostTicket[c.appid+" "+c.path]
}

func (w *modelWorld) ticketIssue(ticket string) (modelTicketIssue, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	is, ok := w.tissued[ticket]
	return is, ok
}

// frontTicketCalls is how many calls for a ticket of typ with a token of
// appid reached the front.
func (w *modelWorld) frontTicketCalls(appid string, typ wechattest.TicketType) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tcalls[appid+" "+string(typ)]
}

// ticketRequests is how many calls for tk WeChat counted against its
// limits (a valid token, no injected fault), over every account app a named.
func (w *modelWorld) ticketRequests(a *modelApp, tk *modelTicket) int {
	n := 0
	for _, id := range a.appids {
		n += w.sb.TicketRequests(id, tk.typ)
	}
	return n
}

// ticketFault is the sandbox fault of a ticket-path fault kind (nil for a
// lost answer, which the front applies).
func ticketFault(kind modelFaultKind, path, appid string, variant uint64) *wechattest.Fault {
	f := &wechattest.Fault{Path: path, AppID: appid}
	switch kind {
	case mfTicketMinusOne:
		f.ErrCode = -1
	case mfTicketHTTP5xx:
		f.Status = http.StatusServiceUnavailable
	case mfTicketDrop:
		f.Drop = true
	case mfTicketGarbage:
		bodies := []string{`{"errcode":0,"errmsg":"ok","ticket":"","expires_in":7200}`, `{"errcode":0,"errmsg":"ok","ticket":"garbage-never-issued","expires_in":0}`,
			`<html><body>502 Bad Gateway</body></html>`, `{"errcode":0,"errmsg":"ok"}`, `{"ticket":`}
		f.Body = bodies[(variant/7)%uint64(len(bodies))]
	case mfTicketSlow:
		// Around the client's timeout (modelHTTPTimeout): some answers
		// arrive late, others never.
		f.Latency = wechattest.Duration(100*time.Millisecond + time.Duration((variant/7)%300)*time.Millisecond)
	case mfTicket45009:
		f.ErrCode = 45009
	case mfTicket40001:
		f.ErrCode = 40001
	default:
		return nil
	}
	return f
}

// ticketFaulted lists the faults of tk's path active for app i's current
// account.
func (w *modelWorld) ticketFaulted(i int, tk *modelTicket) []string {
	var out []string
	for _, f := range w.faults {
		if f.app == i && f.kind.ticket() && f.appid == w.apps[i].appid && f.path == tk.path {
			out = append(out, f.kind.String())
		}
	}
	return out
}

// ticketFaultEnded records the end of a ticket-path fault of app a.
func (w *modelWorld) ticketFaultEnded(a *modelApp, f modelFault, s int) {
	for _, tk := range a.tickets {
		if tk.path != f.path {
			continue
		}
		tk.healthyFrom = max(tk.healthyFrom, s)
		if f.kind == mfTicket45009 {
			// A ticket limit: the ticket is paused, by design, until
			// Beijing midnight (an Official Account's daily limit) or the
			// hour's turn (WeCom's hourly one), or a new secret. The model
			// excuses it until a new secret (more, never less).
			tk.quotaPending = true
		}
	}
}

// ticketSecretWritten records that the app's correct secret was written
// again: that ends its tickets' pauses as the token's.
func (w *modelWorld) ticketSecretWritten(i, s int) {
	for _, tk := range w.apps[i].tickets {
		if tk.quotaPending {
			tk.healthyFrom = max(tk.healthyFrom, s)
		}
		tk.quotaPending = false
	}
}

// publishedKey returns what SSM holds for a credential key ("" when none).
func (w *modelWorld) publishedKey(key string) string {
	var v string
	w.read(func(ctx context.Context) { v, _, _ = w.store.Get(ctx, key) })
	return v
}

// tokenKilled reports whether app i's published token is one WeChat ended
// behind the refresher's back (a revocation or a rogue fetch).
func (w *modelWorld) tokenKilled(i int) bool {
	a := w.apps[i]
	if a.killSeq == 0 {
		return false
	}
	is, ok := w.issue(w.published(i))
	return ok && is.seq <= a.killSeq
}

// tokenClaimable reports whether a claim against app i's published token
// would be admitted and could be decided by WeChat now: what a ticket's
// holder needs when WeChat rejected the token on the ticket call. Refused
// by design: the claims' share of the budget spent, the minimum interval,
// a pause, a check of the token in the last VerifiedFor (claims against it
// are answered without a check), or a check WeChat cannot answer (classic
// and WeCom keep the token).
func (w *modelWorld) tokenClaimable(i int) (bool, string) {
	a := w.apps[i]
	var st lease.State
	var app registry.App
	var err1, err2 error
	w.read(func(ctx context.Context) {
		st, err1 = w.leases.Get(ctx, a.spec.Name)
		app, err2 = w.reg.Get(ctx, a.spec.Name)
	})
	now := w.sb.Now()
	switch {
	case err1 != nil || err2 != nil:
		return false, "unreadable"
	case modelCallsToday(st, now) >= app.DailyBudget-refresh.ScheduleReserve(app):
		return false, "the token's claims budget is spent"
	case !st.LastOnDemandAt.IsZero() && now.Sub(st.LastOnDemandAt) < app.MinInterval:
		return false, "a token claim within the minimum interval"
	case !st.VerifiedAt.IsZero() && now.Sub(st.VerifiedAt) < refresh.DefaultVerifiedFor:
		return false, "WeChat accepted the token on a check moments ago"
	case st.BlockedUntil.After(now):
		return false, "the token is paused"
	case w.active(i, mfCheck) && a.spec.Mode != registry.Stable:
		return false, "the token check fails"
	}
	return true, ""
}

// ticketCauses lists what, at step s, lets ticket tk of app i go without a
// valid published ticket of the app's current account: the token's causes
// (the ticket call needs the token), but for a token ended behind the
// refresher's back, which the ticket's holder replaces through
// compare-and-refresh; DynamoDB refusing reads; a fault of the ticket's
// path; a ticket pause; the ticket not registered.
func (w *modelWorld) ticketCauses(i int, tk *modelTicket, s int) []string {
	a := w.apps[i]
	out := w.causes(i, s, math.MaxInt)
	if w.active(i, mfLeaseGet) {
		// The holder asks for the token through Refresh, whose fast path
		// reads the token's state (the token's scheduled refresh does not).
		// Found by seed 20261121305.
		out = append(out, "DynamoDB Get throttled")
	}
	if !a.ticketsOn.Has(tk.t) {
		out = append(out, "ticket not registered")
	}
	out = append(out, w.ticketFaulted(i, tk)...)
	if tk.quotaPending {
		out = append(out, "ticket 45009 pause")
	}
	return out
}

// ticketHealthyFrom is the step from which the causes of tk (its own and
// the token's) have all ended. The token's count one run later: a run
// starts the due tickets' jobs before a paused token's job (sweep.order),
// and a ticket holder's request for the token is refused by a pause a new
// secret has ended until the token's own job ends it in the state
// (refresh.refused reads no secret version, by design), so the ticket gets
// its token at the next run ("the ticket is retried at the next run",
// docs/design.md, Tickets). Found by seed 20261121189: a token paused by
// 40164, the app re-pointed (a new secret), the token's commit throttled.
func (w *modelWorld) ticketHealthyFrom(i int, tk *modelTicket) int {
	return max(w.healthyFrom(i)+1, tk.healthyFrom)
}

// ticketExcused is the premise's part that needs the state: the ticket's
// budget spent (refused until Beijing midnight, by design), or a dead token
// whose claim would be refused (the ticket's holder then cannot replace it).
func (w *modelWorld) ticketExcused(i int, tk *modelTicket) string {
	var st lease.State
	var err error
	w.read(func(ctx context.Context) { st, err = w.leases.Get(ctx, tk.key) })
	if err != nil || modelCallsToday(st, w.sb.Now()) >= registry.DefaultTicketBudget {
		return "over the ticket budget"
	}
	if w.tokenKilled(i) {
		if ok, why := w.tokenClaimable(i); !ok {
			return "token ended behind the refresher's back, and " + why
		}
	}
	return ""
}

// checkTickets checks what SSM holds for every ticket at sample sec of step
// s, as checkPublished does for the token: never a value WeChat did not
// issue for the app's account and the ticket's type, never an older ticket
// than before (order); a ticket of the current account that passes
// WeChat's check whenever nothing excuses it (availability).
func (w *modelWorld) checkTickets(s, sec int) *modelViolation {
	for i, a := range w.apps {
		for _, tk := range a.tickets {
			pub := w.publishedKey(tk.key)
			is, ok := w.ticketIssue(pub)
			if pub != "" {
				w.stats.check(invTicketOrder)
				switch {
				case !ok:
					return &modelViolation{invTicketOrder, s, fmt.Sprintf("%s (+%ds): SSM holds a ticket WeChat never issued (fp %s)", tk.key, sec, wechat.Fingerprint(pub))}
				case is.typ != tk.typ:
					return &modelViolation{invTicketOrder, s, fmt.Sprintf("%s (+%ds): SSM holds a %s ticket (fp %s)", tk.key, sec, is.typ, wechat.Fingerprint(pub))}
				case !modelHas(a.appids, is.appid):
					return &modelViolation{invTicketOrder, s, fmt.Sprintf("%s (+%ds): SSM holds a ticket of account %s, never the app's (fp %s)", tk.key, sec, is.appid, wechat.Fingerprint(pub))}
				case is.seq < tk.lastPubSeq:
					return &modelViolation{invTicketOrder, s, fmt.Sprintf("%s (+%ds): SSM went back from the ticket issued #%d to the older #%d (fp %s)", tk.key, sec, tk.lastPubSeq, is.seq, wechat.Fingerprint(pub))}
				}
				if is.seq > tk.lastPubSeq {
					tk.lastPubSeq = is.seq
					tk.pubs = append(tk.pubs, pub)
				}
			}
			if len(w.ticketCauses(i, tk, s)) > 0 || s < w.ticketHealthyFrom(i, tk)+modelSettle {
				continue
			}
			why := unusable("ticket", pub, is.appid, a.appid, is.seq, w.sb.CheckTicket(a.appid, tk.typ, pub))
			if why != "" {
				if w.ticketExcused(i, tk) != "" {
					continue
				}
				w.stats.check(invTicketAvailability)
				return &modelViolation{invTicketAvailability, s, fmt.Sprintf("%s (+%ds): %s (%s rotation); nothing excused it since step %d",
					tk.key, sec, why, w.sb.Config().TicketRotation, w.ticketHealthyFrom(i, tk))}
			}
			w.stats.check(invTicketAvailability)
		}
	}
	return nil
}

// awsFault reports whether an AWS fault is active (or pending) for app i.
func (w *modelWorld) awsFault(i int) bool {
	for _, f := range w.faults {
		if f.app == i && f.kind >= mfPutThrottled && f.kind <= mfLeaseGet {
			return true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	lf := w.leaseF[w.apps[i].spec.Name]
	return lf != nil && lf.commitOnce > 0
}

func modelHas(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// ticketCallsNow snapshots, per ticket key, the ticket calls that reached
// the front with a token of the app's current account.
func (w *modelWorld) ticketCallsNow() map[string]int {
	out := map[string]int{}
	for _, a := range w.apps {
		for _, tk := range a.tickets {
			out[tk.key] = w.frontTicketCalls(a.appid, tk.typ)
		}
	}
	return out
}

// checkTicketRun checks after step s's scheduled run that no ticket call
// loops: a run makes at most modelTicketRunCalls calls for one ticket, and
// WeChat counted at most the ticket budget for one ticket in the scenario
// (one Beijing day), nor did the refresher.
func (w *modelWorld) checkTicketRun(s int, before map[string]int) *modelViolation {
	for _, a := range w.apps {
		for _, tk := range a.tickets {
			w.stats.check(invTicketCalls)
			if n := w.frontTicketCalls(a.appid, tk.typ) - before[tk.key]; n > modelTicketRunCalls {
				return &modelViolation{invTicketCalls, s, fmt.Sprintf("%s: one scheduled run made %d ticket calls, want at most %d (a call refused for the token, then %d tries, each perhaps replayed once)",
					tk.key, n, modelTicketRunCalls, wechat.DefaultMaxAttempts)}
			}
			if n := w.ticketRequests(a, tk); n > registry.DefaultTicketBudget {
				return &modelViolation{invTicketCalls, s, fmt.Sprintf("%s: WeChat counted %d ticket calls today, past the ticket budget %d", tk.key, n, registry.DefaultTicketBudget)}
			}
			var st lease.State
			w.read(func(ctx context.Context) { st, _ = w.leases.Get(ctx, tk.key) })
			if n := modelCallsToday(st, w.sb.Now()); n > registry.DefaultTicketBudget {
				return &modelViolation{invTicketCalls, s, fmt.Sprintf("%s: calls_today %d, past the ticket budget %d", tk.key, n, registry.DefaultTicketBudget)}
			}
		}
	}
	return nil
}

// ticketBurst runs act.K concurrent callers of one ticket of app act.App
// (act.V picks it) on the API instances, as burst does for the token:
// N=0 claims against the published ticket (some, against an older one),
// N=1 the same after WeChat ended the access token behind the refresher's
// back, N=2 ensure requests. It checks: no caller's error or result shows a
// ticket, a token or a secret; every ticket handed out is one WeChat issued
// for the app's account and the ticket's type; a burst costs at most one
// ticket call WeChat counts (two reaching it when the first is rejected for
// the token), unless the ticket path is faulted; callers never spend the
// ticket schedule's reserve.
func (w *modelWorld) ticketBurst(ctx context.Context, s int, act modelAction) *modelViolation {
	i := act.App
	a := w.apps[i]
	if len(a.tickets) == 0 {
		return nil
	}
	tk := a.tickets[act.V%uint64(len(a.tickets))]
	name := a.spec.Name
	pub := w.publishedKey(tk.key)
	var st0 lease.State
	var app registry.App
	var appErr error
	w.read(func(ctx context.Context) {
		st0, _ = w.leases.Get(ctx, tk.key)
		app, appErr = w.reg.Get(ctx, name)
	})
	if act.N == 1 {
		w.sb.Revoke(a.appid) // WeChat ends the access token: the ticket call is refused 40001
		a.killSeq = w.lastSeq()
	}
	// A fault of the ticket path (retries, lost answers) or of AWS (a
	// commit refused drops the fetched ticket, and a caller coming after
	// the failure tries again, by design) excuses extra calls.
	faulted := len(w.ticketFaulted(i, tk)) > 0 || w.awsFault(i)
	tokenOK := !w.anyFault(i) && !a.whitelisted && !a.wrongSecret && a.configUntil < s && !a.quotaPending
	if tokenOK && w.tokenKilled(i) {
		tokenOK, _ = w.tokenClaimable(i)
	}
	reqs0, calls0 := w.ticketRequests(a, tk), w.frontTicketCalls(a.appid, tk.typ)

	results, errs := w.callers(act, pub, tk.pubs, 7, func(api *refresh.Refresher, stale string) (refresh.Result, error) {
		return api.RefreshTicket(ctx, name, tk.t, stale)
	})
	reqs1, calls1 := w.ticketRequests(a, tk), w.frontTicketCalls(a.appid, tk.typ)
	var st1 lease.State
	w.read(func(ctx context.Context) { st1, _ = w.leases.Get(ctx, tk.key) })

	if v := w.ticketBurstLeaks(s, tk, results, errs); v != nil {
		return v
	}
	for g := range errs {
		switch {
		case errs[g] != nil && !a.registered && !errors.Is(errs[g], refresh.ErrUnknownApp):
			return &modelViolation{invInternal, s, fmt.Sprintf("%s: a removed app answered %v, want ErrUnknownApp", tk.key, errs[g])}
		case errs[g] != nil && a.registered && !a.ticketsOn.Has(tk.t) && !errors.Is(errs[g], refresh.ErrUnknownTicket):
			return &modelViolation{invInternal, s, fmt.Sprintf("%s: a ticket taken out of the registration answered %v, want ErrUnknownTicket", tk.key, errs[g])}
		case errs[g] == nil && (!a.registered || !a.ticketsOn.Has(tk.t)):
			return &modelViolation{invInternal, s, fmt.Sprintf("%s: a caller was served a ticket the app does not keep (registered %v)", tk.key, a.registered)}
		case errs[g] == nil && results[g].Token != "":
			w.stats.check(invTicketOrder)
			if is, ok := w.ticketIssue(results[g].Token); !ok || is.appid != a.appid || is.typ != tk.typ {
				return &modelViolation{invTicketOrder, s, fmt.Sprintf("%s: a caller was handed a ticket that is not one WeChat issued for account %s (fp %s, issued for %q)",
					tk.key, a.appid, wechat.Fingerprint(results[g].Token), is.appid)}
			}
		}
	}
	if !a.registered || !a.ticketsOn.Has(tk.t) || appErr != nil {
		return nil
	}
	if !faulted {
		w.stats.check(invTicketCalls)
		if n := reqs1 - reqs0; n > 1 {
			return &modelViolation{invTicketCalls, s, fmt.Sprintf("%s: %d concurrent callers (%s) cost %d ticket calls WeChat counted, want at most 1", tk.key, act.K, act.label(), n)}
		}
		if n := calls1 - calls0; tokenOK && n > 2 {
			return &modelViolation{invTicketCalls, s, fmt.Sprintf("%s: %d concurrent callers (%s) made %d ticket calls, want at most 2 (one refused for the token, one with the new token)", tk.key, act.K, act.label(), n)}
		}
	}
	now := w.sb.Now()
	before, after := modelCallsToday(st0, now), modelCallsToday(st1, now)
	if after > before {
		w.stats.check(invTicketCalls)
		rules := registry.App{Name: tk.key, Mode: registry.Classic, RefreshMargin: app.RefreshMargin, DailyBudget: registry.DefaultTicketBudget}
		if limit := rules.DailyBudget - refresh.ScheduleReserve(rules); after > limit {
			return &modelViolation{invTicketCalls, s, fmt.Sprintf("%s: callers pushed calls_today from %d to %d, past the %d they may use (ticket budget %d less the schedule's reserve %d)",
				tk.key, before, after, limit, rules.DailyBudget, refresh.ScheduleReserve(rules))}
		}
	}
	return nil
}

// ticketBurstLeaks: no caller's error or result shows a secret, a token or
// a ticket (the ticket call carries the token in its query: an error must
// not quote it).
func (w *modelWorld) ticketBurstLeaks(s int, tk *modelTicket, results []refresh.Result, errs []error) *modelViolation {
	w.mu.Lock()
	tickets := make([]string, 0, len(w.tissued))
	for t := range w.tissued {
		tickets = append(tickets, t)
	}
	w.mu.Unlock()
	tokens := w.sb.Issued()
	for g := range errs {
		text := results[g].String() + fmt.Sprintf("%v %#v", results[g], results[g])
		if errs[g] != nil {
			text += errs[g].Error()
		}
		w.stats.check(invTicketLeak)
		for _, sec := range w.secrets {
			if strings.Contains(text, sec) {
				return &modelViolation{invTicketLeak, s, tk.key + ": a ticket caller's error or result shows a secret"}
			}
		}
		for _, tok := range tokens {
			if strings.Contains(text, tok) {
				return &modelViolation{invTicketLeak, s, tk.key + ": a ticket caller's error or result shows an access token (fp " + wechat.Fingerprint(tok) + ")"}
			}
		}
		for _, t := range tickets {
			if strings.Contains(text, t) {
				return &modelViolation{invTicketLeak, s, tk.key + ": a ticket caller's error or result shows a ticket (fp " + wechat.Fingerprint(t) + ")"}
			}
		}
	}
	return nil
}

// checkTicketLogs: no ticket WeChat issued is in any log line.
func (w *modelWorld) checkTicketLogs(s int, logs string) *modelViolation {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.tissued) == 0 {
		return nil
	}
	w.stats.check(invTicketLeak)
	for t := range w.tissued {
		if strings.Contains(logs, t) {
			return &modelViolation{invTicketLeak, s, "a ticket appears in the logs (fp " + wechat.Fingerprint(t) + ")"}
		}
	}
	return nil
}
