// Package wxsilenceper plugs wxtoken into github.com/silenceper/wechat/v2:
// an access-token handle (credential.AccessTokenHandle and
// AccessTokenContextHandle) and a JS ticket handle (credential.JsTicketHandle
// and JsTicketContextHandle) that take the app's credentials from wxtoken
// (a pkg/client.Source and TicketSource, such as *client.Client), and Do,
// the retry-once helper silenceper lacks: when WeChat rejects the token
// (40001, 40014, 42001), Do asks wxtoken for a replacement of the rejected
// token and runs the SDK call once more.
//
// With these handles the SDK never calls WeChat's token or ticket
// endpoints itself and needs no cache.Cache for them: wxtoken refreshes on
// its schedule, and the client reads the published value only when
// something can have changed.
package wxsilenceper

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"sync"

	"github.com/silenceper/wechat/v2/credential"
	"github.com/silenceper/wechat/v2/util"

	"github.com/wxtoken/wxtoken/pkg/client"
	"github.com/wxtoken/wxtoken/pkg/ticket"
)

// AccessToken is a silenceper access-token handle backed by wxtoken: set it
// with OfficialAccount.SetAccessTokenHandle (MiniProgram likewise; for
// WeCom assign Work.GetContext().AccessTokenHandle). It hands out src's
// current token, except a token it has already seen WeChat reject, for
// which it hands out the replacement wxtoken answered. It is safe for
// concurrent use; share one per app in a process.
type AccessToken struct {
	src client.Source

	mu sync.Mutex
	// rejected is the last token Refresh replaced, fresh its replacement:
	// should src still answer rejected (a read of SSM that raced the
	// refresh, a Source that does not cache answers), fresh is handed out.
	rejected, fresh string
}

var (
	_ credential.AccessTokenHandle        = (*AccessToken)(nil)
	_ credential.AccessTokenContextHandle = (*AccessToken)(nil)
)

// New returns an access-token handle that takes the app's token from src
// (a *client.Client for the app, typically).
func New(src client.Source) *AccessToken {
	return &AccessToken{src: src}
}

// GetAccessToken implements credential.AccessTokenHandle: it returns the
// app's current token. silenceper's business calls (GetBasic().
// GetCallbackIP() and the like) call it without a context; it then uses
// context.Background, and src bounds its own reads and requests. Its error
// is src's.
func (h *AccessToken) GetAccessToken() (string, error) {
	return h.GetAccessTokenContext(context.Background())
}

// GetAccessTokenContext implements credential.AccessTokenContextHandle: the
// app's current token, from src. Its error is src's.
func (h *AccessToken) GetAccessTokenContext(ctx context.Context) (string, error) {
	tok, err := h.src.Token(ctx)
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if tok == h.rejected && h.fresh != "" {
		return h.fresh, nil
	}
	return tok, nil
}

// Refresh asks wxtoken for a token to replace stale, a token WeChat
// rejected (compare-and-refresh: when another token is published already,
// wxtoken answers it without calling WeChat), and makes the handle hand
// out the answer from now on. Like client.Source's Refresh, it may return
// a usable token together with an error (a 429: wxtoken will not refresh
// now and answers the current token).
func (h *AccessToken) Refresh(ctx context.Context, stale string) (string, error) {
	fresh, err := h.src.Refresh(ctx, stale)
	if fresh != "" && fresh != stale && stale != "" {
		h.mu.Lock()
		h.rejected, h.fresh = stale, fresh
		h.mu.Unlock()
	}
	return fresh, err
}

// errSameToken is Do's error when wxtoken answers the token WeChat
// rejected.
var errSameToken = errors.New("wxsilenceper: wxtoken answered the token WeChat rejected")

// Do runs fn, an SDK call made through an SDK instance that uses h, and,
// when WeChat rejects the token (fn's error carries errcode 40001, 40014 or
// 42001; see ErrCode), asks wxtoken once for a replacement of the token h
// handed out for the call and runs fn once more: never more than two runs.
// It returns fn's last error, or, when no replacement could be had, fn's
// error joined with the reason (the refresh's error, or wxtoken answering
// the same token). An error of the handle before fn runs is returned as is.
//
// Do takes the token for the call from h just before running fn (a cached
// value: no request), so that the token it reports is the one the call
// used, not one another goroutine's call obtained meanwhile: reporting a
// token wxtoken has already replaced costs nothing at WeChat, while
// reporting the current one would make wxtoken replace a valid token.
func (h *AccessToken) Do(ctx context.Context, fn func() error) error {
	used, err := h.GetAccessTokenContext(ctx)
	if err != nil {
		return err
	}
	return h.Retry(ctx, used, fn(), fn)
}

// Retry is Do's second half, for a call whose token the caller obtained
// itself (GetAccessToken, then an asynchronous call): callErr is the error
// of the call made with used. When callErr carries a token-invalid errcode,
// Retry asks wxtoken for a replacement of used and returns retry's error
// (retry should repeat the call through the SDK, which now takes the new
// token from h); otherwise it returns callErr without running retry. When no
// replacement could be had it returns callErr joined with the reason.
func (h *AccessToken) Retry(ctx context.Context, used string, callErr error, retry func() error) error {
	if code, ok := ErrCode(callErr); !ok || !client.TokenInvalid(code) {
		return callErr
	}
	fresh, err := h.Refresh(ctx, used)
	if fresh == "" || fresh == used {
		if err == nil {
			err = errSameToken
		}
		return errors.Join(callErr, err)
	}
	return retry()
}

// errcodeText matches the errcode in silenceper's formatted errors
// ("get access_token error : errcode=40001 , errormsg=...",
// "GetMenu Error , errcode=40001 , errmsg=...").
var errcodeText = regexp.MustCompile(`errcode\s*[=:]\s*(-?\d+)`)

// ErrCode returns WeChat's errcode carried by err, an error of a
// silenceper call: its typed *util.CommonError (most business calls), an
// error in its chain with an ErrCode() int method (wxtoken's *wechat.Error),
// or the "errcode=N" of the messages silenceper formats with fmt.Errorf
// (token and ticket calls, some business calls). ok is false when err
// carries none (nil, a transport error).
func ErrCode(err error) (code int, ok bool) {
	if err == nil {
		return 0, false
	}
	var ce *util.CommonError
	if errors.As(err, &ce) {
		return int(ce.ErrCode), true
	}
	var ec interface{ ErrCode() int }
	if errors.As(err, &ec) {
		return ec.ErrCode(), true
	}
	if m := errcodeText.FindStringSubmatch(err.Error()); m != nil {
		if n, cerr := strconv.Atoi(m[1]); cerr == nil {
			return n, true
		}
	}
	return 0, false
}

// JsTicket is a silenceper JS ticket handle backed by wxtoken's jsapi
// ticket: set it with OfficialAccount.GetJs().SetJsTicketHandle. The SDK
// passes it the access token; it does not need it, since wxtoken keeps the
// ticket. It is safe for concurrent use.
type JsTicket struct {
	src client.TicketSource
}

var (
	_ credential.JsTicketHandle        = (*JsTicket)(nil)
	_ credential.JsTicketContextHandle = (*JsTicket)(nil)
)

// NewJsTicket returns a JS ticket handle that takes the app's jsapi ticket
// from src (a *client.Client for the app, typically; the app must keep a
// jsapi ticket in wxtoken's registry).
func NewJsTicket(src client.TicketSource) *JsTicket {
	return &JsTicket{src: src}
}

// GetTicket implements credential.JsTicketHandle: the app's current jsapi
// ticket (accessToken is ignored). Its error is src's.
func (j *JsTicket) GetTicket(accessToken string) (string, error) {
	return j.GetTicketContext(context.Background(), accessToken)
}

// GetTicketContext implements credential.JsTicketContextHandle: the app's
// current jsapi ticket (accessToken is ignored). Its error is src's.
func (j *JsTicket) GetTicketContext(ctx context.Context, _ string) (string, error) {
	return j.src.Ticket(ctx, ticket.JSAPI)
}

// Refresh asks wxtoken for a jsapi ticket to replace stale, the ticket a
// page's wx.config failed with (reported by the page's wx.error); sign the
// page again afterwards (GetConfig). It may return a usable ticket
// together with an error, as client.TicketSource's RefreshTicket does.
func (j *JsTicket) Refresh(ctx context.Context, stale string) (string, error) {
	return j.src.RefreshTicket(ctx, ticket.JSAPI, stale)
}
