package refresh_test

// The world of the randomized model check (model_test.go): the WeChat
// sandbox behind a recording front, the three in-memory fakes, one scheduled
// refresher and two API refreshers, and the model's own account of which
// conditions WeChat and AWS are in, from which the invariants' premises are
// derived.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wxtoken/wxtoken/pkg/lease/leasetest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/registry/registrytest"
	"github.com/wxtoken/wxtoken/pkg/tokenstore/tokenstoretest"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// Model tunables. The scheduled refresher runs once per simulated minute.
const (
	modelConfigBlock    = 10 * time.Minute
	modelConfigSteps    = 10 // modelConfigBlock in steps
	modelAttemptTimeout = 300 * time.Millisecond
	modelHTTPTimeout    = 300 * time.Millisecond
	// modelSettle: availability is required from the second run after the
	// last cause ended (one schedule period plus the refresh's own time).
	modelSettle = 1
)

var modelT0 = time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC) // 10:00 in Beijing: no midnight in a scenario

// modelIssue is a token the sandbox answered with, in issue order.
type modelIssue struct {
	seq   int
	appid string
}

// modelStoreFault and modelLeaseFault are the AWS faults the fakes' hooks
// apply, by app name.
type modelStoreFault struct{ putThrottled, putLost, getThrottled bool }

type modelLeaseFault struct {
	commitOnce  int // Commit calls left to throttle
	getThrottle bool
}

// modelFault is an active fault: a sandbox fault, a lost answer (the front
// lets the sandbox issue, then drops the connection), or an AWS fault.
type modelFault struct {
	kind  modelFaultKind
	app   int
	appid string // the account it was injected for (WeChat faults)
	until int    // the last step it is active
	path  string // the ticket path (ticket faults)
	sb    *wechattest.Fault
}

type modelFaultKind int

const (
	mfMinusOne modelFaultKind = iota // WeChat faults on the app's credential path
	mfHTTP5xx
	mfDrop
	mfLostAnswer
	mf45011
	mf45009
	mf40164
	mfGarbage
	mfSlow
	mfCheck        // the token check (get_api_domain_ip) fails
	mfPutThrottled // AWS
	mfPutLost
	mfStoreGet
	mfLeaseGet
	// WeChat faults on one ticket path of the app (modelFault.path); its
	// token path is untouched (model_ticket_test.go).
	mfTicketMinusOne
	mfTicketHTTP5xx
	mfTicketDrop
	mfTicketLost
	mfTicketGarbage
	mfTicketSlow
	mfTicket45009
	mfTicket40001 // the ticket call answers 40001 though the token is valid
	mfKinds

	mfWeChatKinds = mfCheck          // kinds below this one are credential-path WeChat faults
	mfTicketFirst = mfTicketMinusOne // kinds from this one on are ticket-path faults
)

var modelFaultNames = [mfKinds]string{"errcode -1", "HTTP 503", "dropped connection", "answer lost after issue", "45011", "45009",
	"40164 (injected)", "garbage answer", "slow WeChat", "token check fails", "SSM Put throttled", "SSM Put answer lost",
	"SSM Get throttled", "DynamoDB Get throttled",
	"ticket: errcode -1", "ticket: HTTP 503", "ticket: dropped connection", "ticket: answer lost after issue",
	"ticket: garbage answer", "ticket: slow WeChat", "ticket: 45009", "ticket: 40001 (injected, token valid)"}

func (k modelFaultKind) String() string { return modelFaultNames[k] }

// ticket reports whether k is a fault of a ticket path.
func (k modelFaultKind) ticket() bool { return k >= mfTicketFirst }

// modelApp is the model's account of one app.
type modelApp struct {
	spec       modelAppSpec
	appid      string
	secret     string // the correct secret (the sandbox's)
	accounts   int
	registered bool
	// Causes the premise of availability excludes.
	whitelisted  bool
	wrongSecret  bool
	configUntil  int  // a config pause may last through this step (-1: none)
	quotaPending bool // a 45009 pause not yet ended by a success or a new secret
	killSeq      int  // a token issued up to this seq was killed behind the refresher's back
	healthyFrom  int  // the step the last cause ended
	lastPubSeq   int
	backSeq      int // after a switch to stable mode: the stable token it may go back to
	// secretAt is the step of the last correct secret write and callsAt
	// the app's token calls then (for "a new secret ends a pause").
	secretAt, secretCalls int
	pubs                  []string // tokens once published, for stale claims
	// Tickets (model_ticket_test.go): the scenario's, each registered
	// while ticketsOn has it; appids are every account the app named, and
	// secretTickets the ticket calls at the last correct secret write.
	tickets       []*modelTicket
	ticketsOn     registry.TicketSet
	appids        []string
	secretTickets int
}

// modelWorld is one scenario's world.
type modelWorld struct {
	sc       *modelScenario
	stats    *modelStats
	srv      *httptest.Server
	sb       *wechattest.Sandbox
	reg      *registrytest.Fake
	store    *tokenstoretest.Fake
	leases   *leasetest.Fake
	sched    *refresh.Refresher
	apis     [2]*refresh.Refresher
	logs     *modelBuffer
	checking atomic.Bool // the model is reading: the fakes' faults are off

	mu     sync.Mutex
	seq    int
	issued map[string]modelIssue
	lost   map[string]bool // appid -> answers are lost after issue
	storeF map[string]*modelStoreFault
	leaseF map[string]*modelLeaseFault
	// Tickets the front saw WeChat answer (by ticket, in issue order),
	// ticket answers to lose (by appid and path), and ticket calls that
	// reached the front (by appid and sandbox ticket type).
	tseq       int
	tissued    map[string]modelTicketIssue
	lostTicket map[string]bool
	tcalls     map[string]int

	apps    []*modelApp
	faults  []modelFault
	secrets []string
	step    int
}

func newModelWorld(sc *modelScenario, stats *modelStats) *modelWorld {
	w := &modelWorld{
		sc: sc, stats: stats,
		sb: wechattest.New(wechattest.Config{Clock: wechattest.NewClock(modelT0, 0),
			TicketRotation: sc.Rotation, TicketGrace: sc.Grace}),
		reg:    registrytest.New(),
		store:  tokenstoretest.New("/wechat"),
		leases: leasetest.New(),
		logs:   &modelBuffer{},
		issued: map[string]modelIssue{},
		lost:   map[string]bool{},
		storeF: map[string]*modelStoreFault{},
		leaseF: map[string]*modelLeaseFault{},

		tissued:    map[string]modelTicketIssue{},
		lostTicket: map[string]bool{},
		tcalls:     map[string]int{},
	}
	w.srv = httptest.NewServer(http.HandlerFunc(w.front))
	w.store.SetFault(w.storeFault)
	w.leases.SetFault(w.leaseFault)
	logger := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client := &wechat.Client{
		HTTPClient: &http.Client{Timeout: modelHTTPTimeout},
		BaseURLs:   []string{w.srv.URL}, WeComBaseURLs: []string{w.srv.URL},
		Now: w.sb.Now, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond,
		Logger: logger.With("component", "wechat"),
	}
	mk := func(owner string) *refresh.Refresher {
		return &refresh.Refresher{Apps: w.reg, Store: w.store, Leases: w.leases, WeChat: client, Owner: owner,
			Now: w.sb.Now, Logger: logger.With("owner", owner), ConfigBlock: modelConfigBlock,
			PollInterval: 5 * time.Millisecond, WaitTimeout: 20 * time.Second, CheckRate: 1000}
	}
	w.sched = mk("schedule")
	w.sched.Concurrency, w.sched.AttemptTimeout = 2, modelAttemptTimeout
	w.apis = [2]*refresh.Refresher{mk("api-1"), mk("api-2")}
	for i, spec := range sc.Apps {
		a := &modelApp{spec: spec, configUntil: -1, registered: true, ticketsOn: spec.Tickets}
		for _, t := range spec.Tickets.List() {
			a.tickets = append(a.tickets, newModelTicket(spec, t))
		}
		w.apps = append(w.apps, a)
		w.newAccount(i, 0)
		w.reg.Put(w.registration(a))
	}
	return w
}

func (w *modelWorld) close() { w.srv.Close() }

// newAccount gives app i a new WeChat account (appid and secret) and writes
// its secret.
func (w *modelWorld) newAccount(i int, salt uint64) {
	a := w.apps[i]
	prefix := "wx"
	if a.spec.Kind == registry.WeCom {
		prefix = "ww"
	}
	a.appid = fmt.Sprintf("%s%012x%04d", prefix, modelHash(a.spec.Name)&0xffffffffffff, a.accounts)
	a.secret = fmt.Sprintf("model-secret-%s-%d-%016x", a.spec.Name, a.accounts, salt^modelHash(a.spec.Name))
	a.accounts++
	a.appids = append(a.appids, a.appid)
	w.sb.AddApp(wechattest.App{AppID: a.appid, Secret: a.secret, Kind: wechattest.Kind(a.spec.Kind)})
	w.putSecret(a, a.secret)
}

func (w *modelWorld) putSecret(a *modelApp, secret string) {
	w.secrets = append(w.secrets, secret)
	w.store.PutSecret(a.spec.Name, secret)
	if secret == a.secret {
		a.secretAt, a.secretCalls = w.step, w.sb.TokenCalls(a.appid)
		a.secretTickets = w.sb.TicketCalls(a.appid)
	}
}

func (w *modelWorld) registration(a *modelApp) registry.App {
	return registry.App{Name: a.spec.Name, AppID: a.appid, Kind: a.spec.Kind, Mode: a.spec.Mode, DailyBudget: a.spec.Budget, Tickets: a.ticketsOn}
}

func modelHash(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// front serves the sandbox, records every token it answers with (in issue
// order, with its account), and drops the answer after the issue where a
// lost-answer fault says so.
func (w *modelWorld) front(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	appid := ""
	switch r.URL.Path {
	case wechattest.PathToken:
		appid = r.URL.Query().Get("appid")
	case wechattest.PathGetToken:
		appid = r.URL.Query().Get("corpid")
	case wechattest.PathStableToken:
		var b struct {
			AppID string `json:"appid"`
		}
		_ = json.Unmarshal(body, &b)
		appid = b.AppID
	}
	tk := w.ticketCall(r)
	rec := httptest.NewRecorder()
	w.sb.ServeHTTP(rec, r) // a sandbox Drop panics with http.ErrAbortHandler: the connection closes
	var ans struct {
		AccessToken string `json:"access_token"`
	}
	if appid != "" && json.Unmarshal(rec.Body.Bytes(), &ans) == nil && ans.AccessToken != "" && w.sb.Check(ans.AccessToken) != 40014 {
		w.mu.Lock()
		if _, ok := w.issued[ans.AccessToken]; !ok {
			w.seq++
			w.issued[ans.AccessToken] = modelIssue{seq: w.seq, appid: appid}
		}
		lose := w.lost[appid]
		w.mu.Unlock()
		if lose {
			if hj, ok := rw.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
	}
	if w.ticketAnswer(tk, rec.Body.Bytes()) {
		if hj, ok := rw.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	for k, v := range rec.Header() {
		rw.Header()[k] = v
	}
	rw.WriteHeader(rec.Code)
	_, _ = rw.Write(rec.Body.Bytes())
}

// issue returns what the front recorded of token.
func (w *modelWorld) issue(token string) (modelIssue, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	is, ok := w.issued[token]
	return is, ok
}

func (w *modelWorld) lastSeq() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

// storeFault and leaseFault apply an app's AWS faults to all its
// credentials: the fakes name a ticket by its key ("app#jsapi").
func (w *modelWorld) storeFault(op tokenstoretest.Op, key string) tokenstoretest.Fault {
	if w.checking.Load() {
		return tokenstoretest.Fault{}
	}
	app := registry.ParseCredentialKey(key).App
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.storeF[app]
	switch {
	case f == nil:
	case op == tokenstoretest.OpPut && f.putThrottled:
		return tokenstoretest.Fault{Err: tokenstoretest.Throttled()}
	case op == tokenstoretest.OpPut && f.putLost:
		return tokenstoretest.Fault{Err: tokenstoretest.Throttled(), After: true}
	case op == tokenstoretest.OpGet && f.getThrottled:
		return tokenstoretest.Fault{Err: tokenstoretest.Throttled()}
	}
	return tokenstoretest.Fault{}
}

func (w *modelWorld) leaseFault(op leasetest.Op, key string) leasetest.Fault {
	if w.checking.Load() {
		return leasetest.Fault{}
	}
	app := registry.ParseCredentialKey(key).App
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.leaseF[app]
	switch {
	case f == nil:
	case op == leasetest.OpCommit && f.commitOnce > 0:
		f.commitOnce--
		// DynamoDB refused a write: the availability premise ("AWS
		// accepts writes") restarts from this step, for the credential
		// whose commit it was.
		for _, a := range w.apps {
			if a.spec.Name != app {
				continue
			}
			if key == app {
				a.healthyFrom = max(a.healthyFrom, w.step)
			}
			for _, tk := range a.tickets {
				if tk.key == key {
					tk.healthyFrom = max(tk.healthyFrom, w.step)
				}
			}
		}
		return leasetest.Fault{Err: leasetest.Throttled()}
	case op == leasetest.OpGet && f.getThrottle:
		return leasetest.Fault{Err: leasetest.Throttled()}
	}
	return leasetest.Fault{}
}

// credPath is the credential path of app i's current mode.
func (w *modelWorld) credPath(i int) string {
	switch w.apps[i].spec.Mode {
	case registry.Classic:
		return wechattest.PathToken
	case registry.GetToken:
		return wechattest.PathGetToken
	}
	return wechattest.PathStableToken
}

// inject starts a fault on app i lasting through step until.
func (w *modelWorld) inject(kind modelFaultKind, i, until int, variant uint64) {
	a := w.apps[i]
	f := modelFault{kind: kind, app: i, appid: a.appid, until: until}
	path := w.credPath(i)
	if kind.ticket() {
		if len(a.tickets) == 0 {
			return
		}
		f.path = a.tickets[variant%uint64(len(a.tickets))].path
		f.sb = ticketFault(kind, f.path, a.appid, variant)
	}
	switch kind {
	case mfMinusOne:
		f.sb = &wechattest.Fault{Path: path, AppID: a.appid, ErrCode: -1}
	case mfHTTP5xx:
		f.sb = &wechattest.Fault{Path: path, AppID: a.appid, Status: http.StatusServiceUnavailable}
	case mfDrop:
		f.sb = &wechattest.Fault{Path: path, AppID: a.appid, Drop: true}
	case mf45011:
		f.sb = &wechattest.Fault{Path: path, AppID: a.appid, ErrCode: 45011}
	case mf45009:
		f.sb = &wechattest.Fault{Path: path, AppID: a.appid, ErrCode: 45009}
	case mf40164:
		f.sb = &wechattest.Fault{Path: path, AppID: a.appid, ErrCode: 40164}
	case mfGarbage:
		bodies := []string{`{"access_token":"","expires_in":7200}`, `{"access_token":"garbage-never-issued","expires_in":0}`,
			`<html><body>502 Bad Gateway</body></html>`, `{"errcode":0,"errmsg":"ok"}`, `{"access_token":`}
		f.sb = &wechattest.Fault{Path: path, AppID: a.appid, Body: bodies[variant%uint64(len(bodies))]}
	case mfSlow:
		lat := 500*time.Millisecond + time.Duration(variant%1500)*time.Millisecond
		f.sb = &wechattest.Fault{Path: path, AppID: a.appid, Latency: wechattest.Duration(lat)}
	case mfCheck:
		switch variant % 3 {
		case 0:
			f.sb = &wechattest.Fault{Path: wechattest.PathDomainIP, AppID: a.appid, ErrCode: -1}
		case 1:
			f.sb = &wechattest.Fault{Path: wechattest.PathDomainIP, AppID: a.appid, Status: http.StatusBadGateway}
		default:
			f.sb = &wechattest.Fault{Path: wechattest.PathDomainIP, AppID: a.appid, Drop: true}
		}
	}
	w.faults = append(w.faults, f)
	if f.sb != nil {
		w.sb.Inject(*f.sb)
	}
	w.applyAWS()
}

// expire ends the faults whose time is up, and records what their end
// means for the premises.
func (w *modelWorld) expire(s int) {
	var keep []modelFault
	resetSB := false
	for _, f := range w.faults {
		if f.until >= s {
			keep = append(keep, f)
			continue
		}
		resetSB = resetSB || f.sb != nil
		a := w.apps[f.app]
		if (f.kind < mfWeChatKinds || f.kind.ticket()) && f.appid != a.appid {
			continue // an account the app no longer uses
		}
		if f.kind.ticket() {
			w.ticketFaultEnded(a, f, s)
			continue
		}
		a.healthyFrom = max(a.healthyFrom, s)
		switch f.kind {
		case mf45009:
			a.quotaPending = true
		case mf40164:
			a.configUntil = max(a.configUntil, s+modelConfigSteps)
		}
	}
	w.faults = keep
	if resetSB {
		w.sb.ClearFaults()
		for _, f := range w.faults {
			if f.sb != nil {
				w.sb.Inject(*f.sb)
			}
		}
	}
	w.applyAWS()
}

// applyAWS sets the fakes' fault tables and the lost answers from the
// active faults.
func (w *modelWorld) applyAWS() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lost = map[string]bool{}
	w.lostTicket = map[string]bool{}
	for _, f := range w.storeF {
		*f = modelStoreFault{}
	}
	for _, lf := range w.leaseF {
		lf.getThrottle = false
	}
	for _, f := range w.faults {
		name := w.apps[f.app].spec.Name
		sf := w.storeF[name]
		if sf == nil {
			sf = &modelStoreFault{}
			w.storeF[name] = sf
		}
		lf := w.leaseF[name]
		if lf == nil {
			lf = &modelLeaseFault{}
			w.leaseF[name] = lf
		}
		switch f.kind {
		case mfLostAnswer:
			w.lost[f.appid] = true
		case mfTicketLost:
			w.lostTicket[f.appid+" "+f.path] = true
		case mfPutThrottled:
			sf.putThrottled = true
		case mfPutLost:
			sf.putLost = true
		case mfStoreGet:
			sf.getThrottled = true
		case mfLeaseGet:
			lf.getThrottle = true
		}
	}
}

func (w *modelWorld) commitOnce(i int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	name := w.apps[i].spec.Name
	if w.leaseF[name] == nil {
		w.leaseF[name] = &modelLeaseFault{}
	}
	w.leaseF[name].commitOnce = 1
}

// active reports whether a fault of one of kinds is active for app i (its
// current account, for WeChat faults).
func (w *modelWorld) active(i int, kinds ...modelFaultKind) bool {
	for _, f := range w.faults {
		if f.app != i || (f.kind < mfWeChatKinds+1 || f.kind.ticket()) && f.appid != w.apps[i].appid {
			continue
		}
		for _, k := range kinds {
			if f.kind == k {
				return true
			}
		}
	}
	return false
}

// anyFault reports whether any fault at all is active for app i, but for
// faults of its ticket paths (they touch no token call).
func (w *modelWorld) anyFault(i int) bool {
	for _, f := range w.faults {
		if f.app == i && !f.kind.ticket() {
			return true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	lf := w.leaseF[w.apps[i].spec.Name]
	return lf != nil && lf.commitOnce > 0
}

// causes lists what, at step s, lets app i go without a valid published
// token of its current account (the availability premise excludes it).
func (w *modelWorld) causes(i, s int, pubSeq int) []string {
	a := w.apps[i]
	var out []string
	if !a.registered {
		out = append(out, "removed")
	}
	for _, f := range w.faults {
		if f.app != i {
			continue
		}
		switch {
		case f.kind < mfWeChatKinds && f.appid == a.appid, f.kind == mfPutThrottled, f.kind == mfStoreGet:
			out = append(out, f.kind.String())
		}
	}
	if a.whitelisted {
		out = append(out, "IP whitelist")
	}
	if a.wrongSecret {
		out = append(out, "wrong secret")
	}
	if a.configUntil >= s {
		out = append(out, "config pause")
	}
	if a.quotaPending {
		out = append(out, "45009 pause")
	}
	if a.killSeq > 0 && pubSeq <= a.killSeq {
		out = append(out, "token killed behind the refresher's back")
	}
	return out
}

// healthyFrom is the step from which app i's causes have all ended.
func (w *modelWorld) healthyFrom(i int) int {
	a := w.apps[i]
	h := a.healthyFrom
	if a.configUntil >= 0 {
		h = max(h, a.configUntil+1)
	}
	return h
}

// resolved records that a success or a new secret ended app i's pauses.
func (w *modelWorld) resolved(i, s int) {
	a := w.apps[i]
	if a.quotaPending || a.configUntil >= s {
		a.healthyFrom = max(a.healthyFrom, s)
	}
	a.quotaPending = false
	a.configUntil = -1
}

// read runs fn with the fakes' faults off (the model reading, not a
// refresher).
func (w *modelWorld) read(fn func(ctx context.Context)) {
	w.checking.Store(true)
	defer w.checking.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fn(ctx)
}

// published returns app i's published token ("" when none).
func (w *modelWorld) published(i int) string {
	var tok string
	w.read(func(ctx context.Context) { tok, _, _ = w.store.Get(ctx, w.apps[i].spec.Name) })
	return tok
}

// rogue fetches a token with app i's secret behind the refresher's back.
func (w *modelWorld) rogue(i int) {
	a := w.apps[i]
	var req *http.Request
	switch a.spec.Mode {
	case registry.Classic:
		q := url.Values{"grant_type": {"client_credential"}, "appid": {a.appid}, "secret": {a.secret}}
		req, _ = http.NewRequest(http.MethodGet, w.srv.URL+wechattest.PathToken+"?"+q.Encode(), nil)
	case registry.GetToken:
		q := url.Values{"corpid": {a.appid}, "corpsecret": {a.secret}}
		req, _ = http.NewRequest(http.MethodGet, w.srv.URL+wechattest.PathGetToken+"?"+q.Encode(), nil)
	default:
		body, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": a.appid, "secret": a.secret, "force_refresh": true})
		req, _ = http.NewRequest(http.MethodPost, w.srv.URL+wechattest.PathStableToken, strings.NewReader(string(body)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if a.spec.Mode != registry.GetToken {
		// Classic: the published token dies after the grace; stable
		// force_refresh: at once. (WeCom keeps earlier tokens.)
		a.killSeq = w.lastSeq()
	}
}

// modelBuffer is a log sink safe for concurrent use.
type modelBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *modelBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *modelBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
