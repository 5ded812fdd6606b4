package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/wxtoken/wxtoken/pkg/client"
)

// apiClient calls the stack's refresh API (pkg/api), SigV4-signed for
// execute-api when creds are set, as pkg/client does.
type apiClient struct {
	base   string
	http   *http.Client
	creds  aws.CredentialsProvider // nil: unsigned (make dev)
	region string
}

// apiAnswer is what the command reads of a token answer or an error answer
// of the API. The token itself is not decoded: the command never shows it.
type apiAnswer struct {
	Status     int
	Version    int64      `json:"version"`
	ExpiresAt  *time.Time `json:"expires_at"`
	Refreshed  bool       `json:"refreshed"`
	Error      *apiErr    `json:"error"`
	RetryAfter time.Duration
}

// apiErr is the API's error object.
type apiErr struct {
	Code          string `json:"code"`
	Message       string `json:"message"`
	WeChatErrcode int    `json:"wechat_errcode"`
}

// refresh asks for app's published token, fetched from WeChat if there is
// none (POST /v1/apps/{app}/refresh without a stale token).
func (c *apiClient) refresh(ctx context.Context, app string) (apiAnswer, error) {
	body := []byte("{}")
	u := c.base + "/v1/apps/" + url.PathEscape(app) + "/refresh"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return apiAnswer{}, fmt.Errorf("API request for %s: %w", app, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := c.sign(ctx, req, body); err != nil {
		return apiAnswer{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return apiAnswer{}, fmt.Errorf("call the API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return apiAnswer{}, fmt.Errorf("read the API's answer: %w", err)
	}
	a := apiAnswer{Status: resp.StatusCode}
	if err := json.Unmarshal(raw, &a); err != nil {
		// API Gateway's own refusals ({"message":"Forbidden"}) and proxies'
		// pages are no wxtoken answer.
		a.Error = &apiErr{Code: "not_wxtoken", Message: fmt.Sprintf("HTTP %d without a wxtoken answer", resp.StatusCode)}
	}
	if a.Error == nil && resp.StatusCode != http.StatusOK {
		var gw struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(raw, &gw)
		a.Error = &apiErr{Code: "gateway", Message: fmt.Sprintf("HTTP %d %s", resp.StatusCode, gw.Message)}
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		a.RetryAfter = time.Duration(s) * time.Second
	}
	return a, nil
}

// sign adds a SigV4 signature for execute-api (nothing when unsigned).
func (c *apiClient) sign(ctx context.Context, req *http.Request, body []byte) error {
	if c.creds == nil {
		return nil
	}
	if err := client.SignRequest(ctx, c.creds, c.region, req, body); err != nil {
		return fmt.Errorf("the API call: %w", err)
	}
	return nil
}
