package client

import (
	"crypto/rand"
	"crypto/sha1" // WeChat's JS-SDK and card signatures are SHA-1 by definition
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wxtoken/wxtoken/pkg/ticket"
)

// JSSDKSignature is what a page passes to wx.config (Official Accounts and
// WeCom) or wx.agentConfig (WeCom) for one URL: the nonce and timestamp it
// was signed with, and the signature.
type JSSDKSignature struct {
	NonceStr  string `json:"nonceStr"`
	Timestamp int64  `json:"timestamp"`
	Signature string `json:"signature"`
	// URL is the page URL that was signed (without its fragment).
	URL string `json:"url"`

	// with is what Client.SignURL and SignAgentConfig signed with, for
	// Client.Resign: behind a pointer, so that neither JSON nor fmt's %+v
	// prints the ticket.
	with *signedWith
}

// signedWith is the ticket a signature was made with.
type signedWith struct {
	kind   ticket.Ticket
	ticket string
}

// SignJSSDK computes WeChat's JS-SDK signature (附录1, JS-SDK使用权限签名
// 算法): SHA-1 of "jsapi_ticket=T&noncestr=N&timestamp=TS&url=U", the
// fields in ASCII order with their raw (not URL-escaped) values, and the
// URL without its "#..." fragment. WeCom's wx.config (with the
// corporation's jsapi_ticket) and wx.agentConfig (with the application's
// agent_config ticket) use the same string, in the same fixed order.
func SignJSSDK(ticket, nonceStr string, timestamp int64, pageURL string) string {
	u, _, _ := strings.Cut(pageURL, "#")
	s := "jsapi_ticket=" + ticket + "&noncestr=" + nonceStr + "&timestamp=" + strconv.FormatInt(timestamp, 10) + "&url=" + u
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// NewJSSDKSignature signs pageURL with ticket, a fresh random nonce and the
// time now, ready for wx.config or wx.agentConfig.
func NewJSSDKSignature(ticket, pageURL string, now time.Time) (JSSDKSignature, error) {
	if ticket == "" {
		return JSSDKSignature{}, fmt.Errorf("client: sign %s: no ticket", strings.SplitN(pageURL, "?", 2)[0])
	}
	nonce, err := nonceStr()
	if err != nil {
		return JSSDKSignature{}, err
	}
	u, _, _ := strings.Cut(pageURL, "#")
	ts := now.Unix()
	return JSSDKSignature{NonceStr: nonce, Timestamp: ts, Signature: SignJSSDK(ticket, nonce, ts, u), URL: u}, nil
}

// SignCard computes the card signature (附录4, 卡券扩展字段及签名生成算法):
// the values taking part (the card api_ticket, timestamp, nonce_str,
// card_id and, when set, code, openid, balance...) sorted as strings,
// concatenated and hashed with SHA-1.
func SignCard(values ...string) string {
	vs := slices.Clone(values)
	slices.Sort(vs)
	sum := sha1.Sum([]byte(strings.Join(vs, "")))
	return hex.EncodeToString(sum[:])
}

// nonceStr is a random 16-character nonce of letters and digits.
func nonceStr() (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("client: nonce: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b), nil
}
