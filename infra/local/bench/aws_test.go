package bench_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/wxtoken/wxtoken/pkg/lease"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/tokenstore"
	"github.com/wxtoken/wxtoken/pkg/wechat"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// awsCounter counts the AWS API calls that go through it, by operation
// (the X-Amz-Target header: DynamoDB_20120810.PutItem,
// AmazonSSM.GetParameter, ...), the bytes of their answers, and the SSM
// calls that cost a KMS request (a read with decryption, a SecureString
// written; not a rotation meta, a String).
type awsCounter struct {
	inner *http.Client
	mu    sync.Mutex
	calls map[string]int
	bytes map[string]int64
	kms   int
}

func newAWSCounter() *awsCounter {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 256
	return &awsCounter{inner: &http.Client{Transport: tr}, calls: map[string]int{}, bytes: map[string]int64{}}
}

// Do implements the SDK's HTTPClient.
func (c *awsCounter) Do(req *http.Request) (*http.Response, error) {
	op := req.Header.Get("X-Amz-Target")
	kms := false
	if strings.HasPrefix(op, "AmazonSSM.") && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		kms = bytes.Contains(body, []byte(`"WithDecryption":true`)) || bytes.Contains(body, []byte(`"Type":"SecureString"`))
	}
	resp, err := c.inner.Do(req)
	c.mu.Lock()
	c.calls[op]++
	if kms {
		c.kms++
	}
	c.mu.Unlock()
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, add: func(n int) {
			c.mu.Lock()
			c.bytes[op] += int64(n)
			c.mu.Unlock()
		}}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	add func(int)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.add(n)
	return n, err
}

// snapshot returns the counts so far and resets them.
func (c *awsCounter) snapshot() awsCalls {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := awsCalls{calls: c.calls, bytes: c.bytes, kms: c.kms}
	c.calls, c.bytes, c.kms = map[string]int{}, map[string]int64{}, 0
	return out
}

// awsCalls are counted calls by operation, and those that cost a KMS
// request.
type awsCalls struct {
	calls map[string]int
	bytes map[string]int64
	kms   int
}

// service sums the calls of one service ("DynamoDB" or "AmazonSSM").
func (a awsCalls) service(prefix string) int {
	n := 0
	for op, c := range a.calls {
		if strings.HasPrefix(op, prefix) {
			n += c
		}
	}
	return n
}

// ops lists "Operation count" pairs, sorted.
func (a awsCalls) ops(per float64) string {
	var parts []string
	for op, c := range a.calls {
		short := op[strings.LastIndex(op, ".")+1:]
		parts = append(parts, short+" "+trimFloat(float64(c)/per))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func trimFloat(f float64) string {
	s := strings.TrimRight(strings.TrimRight(strconv.FormatFloat(f, 'f', 2, 64), "0"), ".")
	if s == "" {
		return "0"
	}
	return s
}

// instance is one wxtoken function instance: a refresher with SDK clients of
// its own whose HTTP calls go through counter.
func instance(cfg aws.Config, counter *awsCounter, sb *wechattest.Server, table, prefix, owner string) *refresh.Refresher {
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.HTTPClient = counter })
	sm := ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.HTTPClient = counter })
	return &refresh.Refresher{
		Apps: registry.New(db, table), Store: tokenstore.New(sm, prefix, ""), Leases: lease.New(db, table),
		WeChat: &wechat.Client{BaseURLs: []string{sb.URL}, WeComBaseURLs: []string{sb.URL}, Now: sb.Now, BaseDelay: time.Millisecond},
		Owner:  owner, Now: sb.Now, Logger: slog.New(slog.DiscardHandler),
	}
}
