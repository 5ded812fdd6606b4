package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/config"
	"github.com/wxtoken/wxtoken/pkg/metrics"
	"github.com/wxtoken/wxtoken/pkg/metrics/metricstest"
	"github.com/wxtoken/wxtoken/pkg/refresh"
	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/schedule"
	"github.com/wxtoken/wxtoken/pkg/testsupport/stacktest"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// scheduleEvent is what EventBridge delivers to the scheduled function.
const scheduleEvent = `{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event","source":"aws.events",` +
	`"account":"123456789012","time":"2026-11-21T08:00:00Z","region":"us-east-1","resources":[],"detail":{}}`

// runMeasure is one scheduled run: wall time, AWS calls, log bytes.
type runMeasure struct {
	wall     time.Duration
	aws      awsCalls
	logBytes int64
	summary  schedule.Summary
}

// scaleResult is one app count.
type scaleResult struct {
	apps            int
	first, steady   runMeasure // every app due (first publish); nothing due
	refreshPerApp   awsCalls   // first minus steady, per refreshed app
	concurrencyUsed int
	// emf meters the EMF documents both runs wrote.
	emf *metricstest.Meter
}

// scale registers n apps (a third classic, the rest stable) and runs the
// scheduled function's handler twice: once with every app due, then with
// none due, as nearly every run of the day is.
func scale(tb testing.TB, n int) scaleResult {
	tb.Helper()
	st := stacktest.New(tb, stacktest.Options{Sandbox: wechattest.Config{Clock: wechattest.NewClock(time.Now(), 1)}})
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		mode := registry.Stable
		if i%3 == 0 {
			mode = registry.Classic
		}
		a := registry.App{Name: fmt.Sprintf("app-%04d", i), AppID: fmt.Sprintf("wxscale%09d", i), Kind: registry.OfficialAccount, Mode: mode}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			mu.Lock() // Register appends to the stack's secrets
			defer mu.Unlock()
			st.Register(a)
		}()
	}
	wg.Wait()

	counter := newAWSCounter()
	awsCfg := st.Cfg.Copy()
	awsCfg.HTTPClient = counter
	logs := &countingWriter{}
	emf := &metricstest.Meter{}
	deps := config.Config{
		Table: st.Table, ParameterPrefix: st.Prefix, Service: "wxtoken", Concurrency: refresh.DefaultConcurrency,
		LeaseDuration: 60 * time.Second, WeChatBaseURLs: []string{st.Sandbox.URL}, WeComBaseURLs: []string{st.Sandbox.URL},
	}.BuildWith(awsCfg, io.MultiWriter(logs, emf))
	h := &schedule.Handler{Refresher: deps.Refresher, Metrics: deps.Metrics, Logger: deps.Logger}
	run := func() runMeasure {
		counter.snapshot()
		logs.n.Store(0)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second) // the function's timeout
		defer cancel()
		began := time.Now()
		sum, err := h.Handle(ctx, json.RawMessage(scheduleEvent))
		if err != nil {
			tb.Fatalf("scheduled run with %d apps: %v", n, err)
		}
		return runMeasure{wall: time.Since(began), aws: counter.snapshot(), logBytes: logs.n.Load(), summary: sum}
	}
	res := scaleResult{apps: n, concurrencyUsed: refresh.DefaultConcurrency, emf: emf}
	res.first = run()
	if got := res.first.summary.Counts["refreshed"]; got != n {
		tb.Fatalf("first run with %d apps refreshed %d (%v)", n, got, res.first.summary.Counts)
	}
	res.steady = run()
	if got := res.steady.summary.Counts["refreshed"]; got != 0 {
		tb.Fatalf("second run with %d apps refreshed %d; want none due", n, got)
	}
	res.refreshPerApp = awsCalls{calls: map[string]int{}}
	for op, c := range res.first.aws.calls {
		res.refreshPerApp.calls[op] = c - res.steady.aws.calls[op]
	}
	return res
}

// countingWriter counts what the function logs (CloudWatch Logs ingestion).
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// Prices: AWS list prices, us-east-1, on-demand, as written down for this
// benchmark (check https://aws.amazon.com/pricing before relying on them).
const (
	priceLambdaRequest = 0.20 / 1e6      // per invocation
	priceLambdaGBs     = 0.0000133334    // per GB-second, arm64
	priceDynamoWrite   = 0.625 / 1e6     // per write request unit, on-demand
	priceDynamoRead    = 0.125 / 1e6     // per read request unit, on-demand
	priceKMSRequest    = 0.03 / 10000    // per KMS request (SecureString encrypt/decrypt with alias/aws/ssm)
	priceLogsGB        = 0.50            // CloudWatch Logs ingestion per GB
	priceNATHour       = 0.045           // NAT gateway per hour
	priceNATGB         = 0.045           // NAT gateway per GB processed
	pricePublicIPv4    = 0.005           // Elastic IP (public IPv4) per hour
	hoursPerMonth      = 730.0           // AWS's billing month
	lambdaMemoryGB     = 128.0 / 1024.0  // template.yaml MemorySize
	runsPerMonth       = 60 * 24 * 30.42 // rate(1 minute)
	refreshesPerDay    = 13.0            // classic every ~100 min (14.4), stable every ~115 min (12.5): about 13
)

// dynamoUnits estimates request units: writes and conditional writes 1 WRU
// each (items are under 1 KB); GetItem 1 RRU (the lease and registry read
// strongly consistent); a Scan 1 RRU per 4 KB of the answer (the scans
// read the whole table and return all of it).
func dynamoUnits(a awsCalls) (wru, rru float64) {
	for op, c := range a.calls {
		switch strings.TrimPrefix(op, "DynamoDB_20120810.") {
		case "PutItem", "UpdateItem", "DeleteItem":
			wru += float64(c)
		case "GetItem":
			rru += float64(c)
		case "Scan", "Query":
			rru += math.Max(float64(c), math.Ceil(float64(a.bytes[op])/4096))
		}
	}
	return wru, rru
}

// kmsRequests: every SecureString read with decryption and every
// SecureString write costs one KMS request (a rotation meta, a String,
// none).
func kmsRequests(a awsCalls) float64 {
	return float64(a.kms)
}

// runCost is the AWS cost of one run: Lambda (the measured wall time
// standing in for billed duration), DynamoDB, KMS and logs.
func runCost(m runMeasure, withInvocation bool) float64 {
	wru, rru := dynamoUnits(m.aws)
	c := wru*priceDynamoWrite + rru*priceDynamoRead + kmsRequests(m.aws)*priceKMSRequest +
		float64(m.logBytes)/1e9*priceLogsGB + m.wall.Seconds()*lambdaMemoryGB*priceLambdaGBs
	if withInvocation {
		c += priceLambdaRequest
	}
	return c
}

// monthlyPerApp: every minute a run with nothing due (shared by all apps),
// plus about refreshesPerDay refreshes per app a day (the refresh's extra
// cost over a run with nothing due).
func monthlyPerApp(r scaleResult) float64 {
	steady := runCost(r.steady, true) / float64(r.apps)
	refresh := (runCost(r.first, false) - runCost(r.steady, false)) / float64(r.apps)
	return steady*runsPerMonth + refresh*refreshesPerDay*30.42
}

// TestScaleSmoke checks the scale measurement with 5 apps under `make test`.
func TestScaleSmoke(t *testing.T) {
	r := scale(t, 5)
	// Each publish: the token (a SecureString: a KMS request) and its
	// rotation meta (a String).
	if r.first.aws.calls["AmazonSSM.PutParameter"] != 10 {
		t.Errorf("first run: %d PutParameter calls for 5 apps; want 10 (5 tokens, 5 metas)", r.first.aws.calls["AmazonSSM.PutParameter"])
	}
	if r.first.aws.kms < 5 || r.first.aws.kms > r.first.aws.service("AmazonSSM")-5 {
		t.Errorf("first run: %d KMS requests for %d SSM calls; want at least the 5 tokens written, and no meta counted", r.first.aws.kms, r.first.aws.service("AmazonSSM"))
	}
	if r.steady.aws.calls["AmazonSSM.PutParameter"] != 0 || r.steady.aws.service("DynamoDB") == 0 {
		t.Errorf("steady run: %v; want reads and no PutParameter", r.steady.aws.calls)
	}
	if c := monthlyPerApp(r); c <= 0 || c > 1 {
		t.Errorf("monthly cost per app %.4f USD; want a positive figure under a dollar", c)
	}
}

// scaleRow is one app count of the scale section: the scheduled runs and
// the metrics of a simulated day under the rules before and now.
type scaleRow struct {
	scaleResult
	before, now metricsDay
	alarms      int
}

// alarmsPerApp is the template's alarms a month, shared by the apps.
func (r scaleRow) alarmsPerApp() float64 {
	return float64(r.alarms) * priceAlarmMonth / float64(r.apps)
}

// total is the whole monthly AWS cost per app: the runs, the metrics (as
// they are now) and the alarms.
func (r scaleRow) total() float64 {
	return monthlyPerApp(r.scaleResult) + r.now.perApp() + r.alarmsPerApp()
}

// BenchmarkScale runs scheduled runs over 10, 100 and 1,000 apps, prices
// the CloudWatch metrics of a simulated day of as many apps (checked
// against the documents the runs really wrote) and writes scale.md.
func BenchmarkScale(b *testing.B) {
	var rows []scaleRow
	alarms := templateAlarms(b)
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var r scaleResult
			for i := 0; i < b.N; i++ {
				r = scale(b, n)
			}
			row := scaleRow{scaleResult: r, alarms: alarms,
				before: simulateMetricsDay(b, n, rulesBefore), now: simulateMetricsDay(b, n, rulesNow)}
			checkRealSeries(b, r.emf, row.now)
			b.ReportMetric(r.first.wall.Seconds(), "first-run-s")
			b.ReportMetric(r.steady.wall.Seconds(), "steady-run-s")
			b.ReportMetric(float64(row.now.series), "series")
			b.ReportMetric(row.total(), "usd/app-month")
			rows = append(rows, row)
		})
	}
	writeSection(b, "scale.md", scaleSection(rows))
}

func scaleSection(rows []scaleRow) string {
	var s strings.Builder
	fmt.Fprintf(&s, "## 3. Scale: apps per scheduled run\n\n")
	fmt.Fprintf(&s, "The scheduled function's handler (pkg/schedule with the refresher, metrics and logs exactly as the function builds them, concurrency %d) "+
		"runs over N registered apps (a third classic, the rest stable) against DynamoDB Local, moto and the sandbox: "+
		"first with every app due (each one fetched and published), then with nothing due, which is what nearly every run of the day finds. "+
		"AWS calls are counted at the SDK's HTTP client; wall times are this machine's, with local engines.\n\n", rows[0].concurrencyUsed)
	fmt.Fprintf(&s, "| Apps | Run, every app due: wall time | AWS calls per app | Run, nothing due: wall time | AWS calls per app | Log bytes per app per run (nothing due) | "+
		"Runs: monthly cost per app | CloudWatch metrics per app: before → now | Alarms per app | **Monthly AWS cost per app** |\n")
	fmt.Fprintf(&s, "|---:|---:|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		per := float64(r.apps)
		fmt.Fprintf(&s, "| %d | %v | %.2f (%s) | %v | %.2f (%s) | %.0f | $%.4f | $%.4f → $%.4f | $%.4f | **$%.4f** |\n", r.apps,
			r.first.wall.Round(time.Millisecond), float64(len0(r.first.aws))/per, r.first.aws.ops(per),
			r.steady.wall.Round(time.Millisecond), float64(len0(r.steady.aws))/per, r.steady.aws.ops(per),
			float64(r.steady.logBytes)/per, monthlyPerApp(r.scaleResult), r.before.perApp(), r.now.perApp(), r.alarmsPerApp(), r.total())
	}
	fmt.Fprintf(&s, "\nHow the monthly cost per app is computed: %.0f runs a month (rate(1 minute)), each costing what the run with nothing due cost, shared by the apps, "+
		"plus %.0f refreshes per app a day, each costing what the run with every app due cost over the run with nothing due, per app; "+
		"plus the CloudWatch custom metrics of a day (below) and the template's alarms, shared by the apps. "+
		"Prices (AWS list prices, us-east-1, on-demand; check the pricing pages before relying on them): "+
		"Lambda arm64 $0.20 per million invocations and $0.0000133334 per GB-second at 128 MB, with this machine's wall time standing in for billed duration; "+
		"DynamoDB on-demand $0.625 per million write units and $0.125 per million read units (writes of items under 1 KB at 1 unit, a strongly consistent GetItem at 1, a Scan at 1 per 4 KB returned); "+
		"KMS $0.03 per 10,000 requests (each SecureString read with decryption and each SecureString written, with the AWS-managed key alias/aws/ssm; a rotation meta is a String and costs none; KMS's 20,000 free requests a month are not deducted); "+
		"SSM Parameter Store standard parameters and standard throughput: no charge; CloudWatch Logs ingestion $0.50 per GB (the EMF documents are log lines and are counted in the log bytes); "+
		"CloudWatch custom metrics $%.2f per metric a month for the first 10,000, prorated by the hour, and alarms $%.2f per standard-resolution alarm a month "+
		"(https://aws.amazon.com/cloudwatch/pricing/, as issue 13 quotes them; the free tier's 10 metrics and 10 alarms are not deducted); "+
		"EventBridge scheduled rules: no charge; API Gateway HTTP API $1.00 per million requests, for on-demand refreshes only (not in the figure). "+
		"Business servers' own reads (GetParameters of a credential and its rotation meta, about 15 a day per credential and process: §1, \"Consumers' reads\") are billed to them (KMS $0.03 per 10,000) and not counted here. "+
		"A run with nothing due still reads SSM for about a tenth of the apps: it compares each app's SSM version with the table every 10 minutes, spread over the runs (CheckEvery). "+
		"The Lambda part is a lower bound: in AWS each call has a network round trip (and a refresh WeChat's, from the AWS Region), and Lambda's own START/END/REPORT log lines are not counted.\n\n",
		runsPerMonth, refreshesPerDay, priceMetricMonth, priceAlarmMonth)

	fmt.Fprintf(&s, "**CloudWatch metrics, measured.** Every distinct series (metric name, dimension set and dimension values) is a custom metric billed for each hour in which it receives data. "+
		"A simulated day (pkg/metrics/metricstest) drives the real schedule handler every minute for 1,440 runs over the apps — N−2 healthy ones refreshed when due "+
		"(classic 20 minutes before expiry, stable 270 s before, about 13 refreshes a day each; a third of them also keep a jsapi ticket, refreshed 20 minutes before it expires and reported under its key, app#jsapi), one app whose every WeChat call fails (errcode −1, so its token runs out), "+
		"one classic app whose every refresh finds drift, and %d on-demand API refreshes an hour — into the metrics package, "+
		"and meters the EMF documents written: the distinct series, and the hours in which each received data (metric-hours). "+
		"A month costs the day's metric-hours × %.2f days × $%.2f / %.0f h. The series the scale runs above really wrote are checked to be among the day's. "+
		"*Before* prices the same day under the earlier rules (Refreshes per App and Outcome, CallsToday per App, and TokenRemainingLife per App for every app within 10 minutes of expiry, which every stable app is for about six runs of each two hours); "+
		"*now* keeps the series at the service level, with per-app series only for the failing and the drifting app. The template has %d alarms.\n\n",
		onDemandPerHour, daysPerMonth, priceMetricMonth, hoursPerMonth, rows[0].alarms)
	fmt.Fprintf(&s, "| Apps | Rules | Distinct series | of them per app | Metric-hours a day | EMF bytes a day | Metrics a month | Per app a month |\n")
	fmt.Fprintf(&s, "|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		for _, d := range []metricsDay{r.before, r.now} {
			fmt.Fprintf(&s, "| %d | %s | %d | %d | %d | %d | $%.2f | $%.4f |\n", d.apps, d.rules, d.series, d.perAppSets, d.seriesHours, d.emfBytes, d.monthly(), d.perApp())
		}
	}
	fmt.Fprintf(&s, "\nThe series now (the pkg/metrics package comment says why): Refreshes by Outcome, by Reason and by Credential (token or the ticket); RefreshFailures, Drift and PausedRefusals at the service level and per App "+
		"(an app a person must act on); WeChatErrors by ErrCode; LockContention, CoalescedRequests and CallsToday (Maximum: the busiest app) at the service level; "+
		"TokenRemainingLife at the service level every run and per App only below %v (a healthy app never is); AppsNeedingAttention once per run; "+
		"ApiResponses by StatusClass and ApiInternalErrors. The per-app detail of healthy apps is in the functions' JSON logs (CloudWatch Logs Insights).\n\n",
		metrics.AppLifeFloor)
	nat := priceNATHour * hoursPerMonth
	eip := pricePublicIPv4 * hoursPerMonth
	fmt.Fprintf(&s, "**Fixed cost of a fixed egress IP** (infra/egress-vpc.yaml, only for apps whose WeChat IP whitelist needs it), not per app: "+
		"a NAT gateway $%.2f a month ($%.3f an hour × %.0f h) plus $%.3f per GB processed, and its Elastic IP $%.2f a month (public IPv4, $%.3f an hour); "+
		"one NAT gateway per Availability Zone used. With a fixed IP, one NAT gateway costs more than thousands of apps' refreshes.\n",
		nat, priceNATHour, hoursPerMonth, priceNATGB, eip, pricePublicIPv4)
	return s.String()
}

func len0(a awsCalls) int {
	n := 0
	for _, c := range a.calls {
		n += c
	}
	return n
}
