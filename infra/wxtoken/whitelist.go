package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"

	"github.com/wxtoken/wxtoken/pkg/wechat"
)

// The IP WeChat quotes in a whitelist refusal (40164, 61004, 60020) is not
// kept in the app's state, which every consumer can read through the status
// route; the functions log it as whitelist_ip on their "refresh_failed"
// lines. The command reads it there: from the stack's log groups, or from
// make dev's functions.log.

// ipLookback is how far back the logs are searched.
const ipLookback = time.Hour

// ipFinder finds the IP WeChat quoted in the app's latest whitelist refusal
// ("" when none is found).
type ipFinder interface {
	whitelistIP(ctx context.Context, app string) string
}

// failureLine is what the command reads of a function's log line.
type failureLine struct {
	Event       string `json:"event"`
	App         string `json:"app"`
	WhitelistIP string `json:"whitelist_ip"`
}

// ipIn returns the whitelist_ip of the last refresh_failed line of app in
// JSON lines r.
func ipIn(r io.Reader, app string) string {
	ip := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l failureLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Event == "refresh_failed" && l.App == app && l.WhitelistIP != "" {
			ip = l.WhitelistIP
		}
	}
	return ip
}

// fileIPs reads make dev's function log.
type fileIPs struct{ path string }

func (f fileIPs) whitelistIP(_ context.Context, app string) string {
	file, err := os.Open(f.path)
	if err != nil {
		return ""
	}
	defer file.Close()
	return ipIn(file, app)
}

// maxLogPages bounds the pages of one log group the IP lookup reads.
const maxLogPages = 20

// Logs is what the command needs of CloudWatch Logs.
type Logs interface {
	FilterLogEvents(ctx context.Context, in *cloudwatchlogs.FilterLogEventsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.FilterLogEventsOutput, error)
}

// logGroupIPs searches a stack's function log groups (template.yaml:
// /wxtoken/{stack}/refresh-api and .../scheduled-refresh).
type logGroupIPs struct {
	logs  Logs
	stack string
	now   func() time.Time
}

func (l logGroupIPs) whitelistIP(ctx context.Context, app string) string {
	pattern := fmt.Sprintf(`{ $.event = "refresh_failed" && $.app = %q && $.whitelist_ip = * }`, app)
	var latest int64
	ip := ""
	for _, fn := range []string{"refresh-api", "scheduled-refresh"} {
		in := &cloudwatchlogs.FilterLogEventsInput{
			LogGroupName:  aws.String("/wxtoken/" + l.stack + "/" + fn),
			FilterPattern: aws.String(pattern),
			StartTime:     aws.Int64(l.now().Add(-ipLookback).UnixMilli()),
		}
		// FilterLogEvents may answer empty pages with a next token while
		// it searches; follow them, a bounded number of times.
		for page := 0; page < maxLogPages; page++ {
			out, err := l.logs.FilterLogEvents(ctx, in)
			if err != nil {
				break // no logs:FilterLogEvents permission: the advice says where to look
			}
			for _, ev := range out.Events {
				var line failureLine
				if json.Unmarshal([]byte(aws.ToString(ev.Message)), &line) == nil && line.WhitelistIP != "" && aws.ToInt64(ev.Timestamp) >= latest {
					latest, ip = aws.ToInt64(ev.Timestamp), line.WhitelistIP
				}
			}
			if out.NextToken == nil {
				break
			}
			in.NextToken = out.NextToken
		}
	}
	return ip
}

// refusedIP is the IP WeChat quoted for app: in the state's last error (an
// older wxtoken kept WeChat's errmsg there), or in the functions' logs.
func (b *backend) refusedIP(ctx context.Context, app, lastError string) string {
	if ip := (&wechat.Error{Msg: lastError}).IP(); ip != "" {
		return ip
	}
	if b.ips == nil {
		return ""
	}
	return b.ips.whitelistIP(ctx, app)
}
