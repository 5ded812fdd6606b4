// Command wxsandbox runs the WeChat sandbox of pkg/wechat/wechattest as a
// standalone server, for `make dev` and for trying wxtoken or any WeChat
// client without WeChat.
//
//	go run ./infra/local/wxsandbox -addr 127.0.0.1:8081 \
//	    -app offiaccount:wxdemo0000000001:demosecret \
//	    -app wecom:wwdemo0000000001:wecomsecret
//
// It prints its base URL, then serves until interrupted. Every flag maps to a
// field of wechattest.Config; the admin routes under /_sandbox/ (stats,
// faults, clock, apps) steer it at run time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// appFlags collects repeated -app KIND:APPID:SECRET[:IP,IP...] flags.
type appFlags []wechattest.App

func (a *appFlags) String() string { return fmt.Sprintf("%d apps", len(*a)) }

func (a *appFlags) Set(v string) error {
	parts := strings.SplitN(v, ":", 4)
	if len(parts) < 3 || parts[1] == "" || parts[2] == "" {
		return errors.New("want KIND:APPID:SECRET[:IP,IP...]")
	}
	kind := wechattest.Kind(parts[0])
	switch kind {
	case wechattest.OfficialAccount, wechattest.MiniProgram, wechattest.WeCom:
	default:
		return fmt.Errorf("kind %q: want offiaccount, miniprogram or wecom", parts[0])
	}
	app := wechattest.App{Kind: kind, AppID: parts[1], Secret: parts[2]}
	if len(parts) == 4 && parts[3] != "" {
		app.AllowedIPs = strings.Split(parts[3], ",")
	}
	*a = append(*a, app)
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "wxsandbox: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("wxsandbox", flag.ContinueOnError)
	var (
		apps    appFlags
		cfg     wechattest.Config
		addr    = fs.String("addr", "127.0.0.1:0", "listen address (port 0: a free port)")
		speed   = fs.Float64("speed", 1, "sandbox seconds per real second (0 freezes the clock)")
		urlFile = fs.String("url-file", "", "also write the base URL to this file once listening")
		quiet   = fs.Bool("quiet", false, "do not log each request")
		startAt = fs.String("start", "", "sandbox start time, RFC 3339 (default: now)")
	)
	fs.Var(&apps, "app", "register an app: KIND:APPID:SECRET[:IP,IP...] with KIND offiaccount, miniprogram or wecom and an optional IP whitelist (repeatable)")
	fs.DurationVar(&cfg.TokenLifetime, "lifetime", 7200*time.Second, "token lifetime")
	fs.DurationVar(&cfg.Grace, "grace", 300*time.Second, "how long a superseded classic token stays valid")
	fs.DurationVar(&cfg.StableWindow, "stable-window", 300*time.Second, "final window in which stable_token rotates")
	fs.DurationVar(&cfg.ForceRefreshInterval, "force-interval", 30*time.Second, "minimum interval between effective force_refresh calls")
	fs.IntVar(&cfg.ForceRefreshDailyLimit, "force-daily", 20, "force_refresh calls per day")
	fs.IntVar(&cfg.ClassicDailyQuota, "classic-quota", 2000, "/cgi-bin/token calls per app per day")
	fs.IntVar(&cfg.StableDailyQuota, "stable-quota", 500000, "/cgi-bin/stable_token calls per app per day")
	fs.IntVar(&cfg.StableMinuteQuota, "stable-minute-quota", 10000, "/cgi-bin/stable_token calls per app per minute")
	fs.IntVar(&cfg.WeComDailyQuota, "wecom-quota", 0, "gettoken calls per corp per day (0: unlimited)")
	fs.IntVar(&cfg.TokenLength, "token-length", 512, "length of issued tokens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	start := time.Now()
	if *startAt != "" {
		t, err := time.Parse(time.RFC3339, *startAt)
		if err != nil {
			return fmt.Errorf("-start: %w", err)
		}
		start = t
	}
	if *speed < 0 {
		return errors.New("-speed must not be negative")
	}
	cfg.Clock = wechattest.NewClock(start, *speed)
	sb := wechattest.New(cfg, apps...)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	base := "http://" + ln.Addr().String()
	var h http.Handler = sb
	if !*quiet {
		h = logRequests(sb)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}

	fmt.Printf("wxsandbox: listening on %s\n", base)
	for _, a := range apps {
		fmt.Printf("wxsandbox: app %s (%s)\n", a.AppID, a.Kind)
	}
	if *urlFile != "" {
		if err := os.WriteFile(*urlFile, []byte(base+"\n"), 0o644); err != nil {
			return fmt.Errorf("-url-file: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// logRequests prints one line per WeChat call: method and path only, since
// the query carries secrets and tokens.
func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(os.Stderr, "wxsandbox: %s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
		next.ServeHTTP(w, r)
	})
}
