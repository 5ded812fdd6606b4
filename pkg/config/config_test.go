package config_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/wxtoken/wxtoken/pkg/config"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFromEnvDefaults(t *testing.T) {
	c, err := config.FromEnv(env(map[string]string{"WXTOKEN_TABLE": "wxtoken-StateTable-ABC123"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ParameterPrefix != "/wxtoken" || c.KMSKeyID != "alias/aws/ssm" || c.LeaseDuration != time.Minute ||
		c.Concurrency != 8 || c.Service != "wxtoken" || c.WeChatBaseURLs != nil || c.WeComBaseURLs != nil {
		t.Errorf("defaults: %+v", c)
	}
}

func TestFromEnv(t *testing.T) {
	base := map[string]string{"WXTOKEN_TABLE": "t-1"}
	tests := []struct {
		name  string
		set   map[string]string
		check func(t *testing.T, c config.Config)
		errs  []string // substrings the error must hold; nil means success
	}{
		{"all set", map[string]string{
			"WXTOKEN_PARAMETER_PREFIX": "/prod/wechat", "WXTOKEN_KMS_KEY_ID": "arn:aws-cn:kms:cn-north-1:123456789012:key/k",
			"WXTOKEN_LEASE_SECONDS": "90", "WXTOKEN_CONCURRENCY": "16", "WXTOKEN_LOG_LEVEL": "DEBUG", "WXTOKEN_SERVICE": "wx-prod",
			"WXTOKEN_WECHAT_BASE_URLS": "https://api.weixin.qq.com, https://api2.weixin.qq.com/", "WXTOKEN_WECOM_BASE_URLS": "http://127.0.0.1:8081",
		}, func(t *testing.T, c config.Config) {
			if c.ParameterPrefix != "/prod/wechat" || c.LeaseDuration != 90*time.Second || c.Concurrency != 16 || c.Service != "wx-prod" ||
				len(c.WeChatBaseURLs) != 2 || c.WeChatBaseURLs[1] != "https://api2.weixin.qq.com" || c.WeComBaseURLs[0] != "http://127.0.0.1:8081" {
				t.Errorf("config %+v", c)
			}
		}, nil},
		{"no table", map[string]string{"WXTOKEN_TABLE": ""}, nil, []string{"WXTOKEN_TABLE: not set"}},
		{"bad table", map[string]string{"WXTOKEN_TABLE": "a b"}, nil, []string{"WXTOKEN_TABLE", "not a DynamoDB table name"}},
		{"prefix without slash", map[string]string{"WXTOKEN_PARAMETER_PREFIX": "wechat"}, nil, []string{"WXTOKEN_PARAMETER_PREFIX"}},
		{"prefix with trailing slash", map[string]string{"WXTOKEN_PARAMETER_PREFIX": "/wechat/"}, nil, []string{"WXTOKEN_PARAMETER_PREFIX"}},
		{"lease too short", map[string]string{"WXTOKEN_LEASE_SECONDS": "5"}, nil, []string{"WXTOKEN_LEASE_SECONDS"}},
		{"concurrency zero", map[string]string{"WXTOKEN_CONCURRENCY": "0"}, nil, []string{"WXTOKEN_CONCURRENCY"}},
		{"unknown log level", map[string]string{"WXTOKEN_LOG_LEVEL": "loud"}, nil, []string{"WXTOKEN_LOG_LEVEL"}},
		{"http to a remote host", map[string]string{"WXTOKEN_WECHAT_BASE_URLS": "http://api.weixin.qq.com"}, nil, []string{"WXTOKEN_WECHAT_BASE_URLS", "loopback"}},
		{"a path in a base URL", map[string]string{"WXTOKEN_WECOM_BASE_URLS": "https://qyapi.weixin.qq.com/cgi-bin"}, nil, []string{"WXTOKEN_WECOM_BASE_URLS"}},
		{"credentials in a base URL", map[string]string{"WXTOKEN_WECHAT_BASE_URLS": "https://api.weixin.qq.com,https://u:S3cretP4ss@api2.weixin.qq.com"}, nil, []string{"WXTOKEN_WECHAT_BASE_URLS", "entry 2"}},
		{"every problem at once", map[string]string{"WXTOKEN_TABLE": "", "WXTOKEN_LOG_LEVEL": "x", "WXTOKEN_CONCURRENCY": "x"}, nil,
			[]string{"WXTOKEN_TABLE", "WXTOKEN_LOG_LEVEL", "WXTOKEN_CONCURRENCY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range base {
				m[k] = v
			}
			for k, v := range tt.set {
				m[k] = v
			}
			c, err := config.FromEnv(env(m))
			if tt.errs == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tt.errs)
			}
			for _, w := range tt.errs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "S3cretP4ss") {
				t.Errorf("error %q repeats a password", err)
			}
		})
	}
}

func TestBuildWith(t *testing.T) {
	c, err := config.FromEnv(env(map[string]string{"WXTOKEN_TABLE": "t-1", "WXTOKEN_LOG_LEVEL": "warn", "WXTOKEN_LEASE_SECONDS": "45"}))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	d := c.BuildWith(aws.Config{Region: "cn-north-1"}, &out)
	if d.Refresher == nil || d.Refresher.Observe == nil || d.Refresher.LeaseDuration != 45*time.Second || d.Refresher.Owner == "" {
		t.Fatalf("refresher not wired: %+v", d.Refresher)
	}
	d.Logger.Info("dropped below warn")
	d.Logger.Warn("kept")
	if strings.Contains(out.String(), "dropped") || !strings.Contains(out.String(), `"msg":"kept"`) {
		t.Errorf("log level not applied: %s", out.String())
	}
	if a, b := config.Owner(), config.Owner(); a == b {
		t.Error("two owners in one process are equal; leases need distinct names")
	}
}
