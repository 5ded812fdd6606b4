// Command testbed starts the local AWS engines that wxtoken's integration
// tests run against — DynamoDB Local (in memory) and moto server (SSM, KMS) —
// each on a free loopback port, runs a command with the environment that
// points the AWS SDK at them, and stops both engines when the command ends,
// fails, or the run is interrupted.
//
// Usage:
//
//	testbed -dynamodb-local DIR -moto PATH [-- command args...]
//
// Without a command it prints the environment as shell exports and serves
// until interrupted (Ctrl-C). The Makefile installs both engines (pinned,
// cached under .cache/) and calls this command; see `make test` and
// `make testbed`.
//
// With -calls FILE, each engine is reached through a proxy of this command
// that records the calls the functions' code makes (attributed by the access
// key that signs them, see pkg/testsupport/awscalls); they are written to
// FILE when the command succeeds, for the IAM check (infra/local/iam).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run())
}

func run() int {
	var cfg config
	flag.StringVar(&cfg.dynamoDir, "dynamodb-local", ".cache/dynamodb-local", "directory holding DynamoDB Local's jars and native libraries")
	flag.StringVar(&cfg.java, "java", "java", "java executable (17 or newer)")
	flag.StringVar(&cfg.moto, "moto", ".cache/venv/bin/moto_server", "moto_server executable")
	flag.StringVar(&cfg.logDir, "logdir", "", "directory for the engines' logs (default: a temporary directory, removed after a successful run)")
	flag.StringVar(&cfg.region, "region", "us-east-1", "AWS region exported to the command")
	flag.StringVar(&cfg.calls, "calls", "", "record the AWS calls the functions' code signs (pkg/testsupport/awscalls) through a proxy in front of each engine, and write them to this JSON file when the command succeeds")
	flag.DurationVar(&cfg.startTimeout, "start-timeout", 90*time.Second, "how long an engine may take to answer after it starts")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: testbed [flags] [-- command args...]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one acts as usual (ends us at
		// once); the engines still die with us through Pdeathsig.
		<-ctx.Done()
		stop()
	}()

	b, err := start(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed: %v\n", err)
		return 1
	}
	code := serve(ctx, b, flag.Args())
	if code == 0 && b.recorder != nil && len(flag.Args()) > 0 {
		if len(b.recorder.Calls()) == 0 {
			fmt.Fprintf(os.Stderr, "testbed: %v\n", errNoCalls)
			code = 1
		} else if err := writeCalls(cfg.calls, b.recorder); err != nil {
			fmt.Fprintf(os.Stderr, "testbed: %v\n", err)
			code = 1
		} else {
			fmt.Fprintf(os.Stderr, "testbed: %d kinds of AWS call by the functions' code recorded in %s\n", len(b.recorder.Calls()), cfg.calls)
		}
	}
	b.release(code == 0)
	return code
}

// serve runs args (or, without args, waits for an interrupt) with the bed's
// environment and returns the exit status for this process.
func serve(ctx context.Context, b *bed, args []string) int {
	env := b.environ()
	for _, e := range b.engines {
		fmt.Fprintf(os.Stderr, "testbed: %s on %s\n", e.name, e.url)
	}

	if len(args) == 0 {
		for _, kv := range env {
			fmt.Printf("export %s\n", kv)
		}
		fmt.Fprintln(os.Stderr, "testbed: serving until interrupted (Ctrl-C)")
		select {
		case <-ctx.Done():
			return 0
		case err := <-b.died:
			fmt.Fprintf(os.Stderr, "testbed: %v\n", err)
			return 1
		}
	}

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	// Its own process group, so that stopping it stops what it started too
	// (go test's test binaries, the processes those start).
	// Killed by the kernel, too, should testbed itself be killed.
	cmd.SysProcAttr = engineAttr()
	if err := startLocked(cmd.Start); err != nil {
		fmt.Fprintf(os.Stderr, "testbed: start %s: %v\n", args[0], err)
		return 1
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	stopCommand := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			fmt.Fprintf(os.Stderr, "testbed: %s ignored SIGTERM for 10s; killing it\n", args[0])
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-waited
		}
		// Anything of the group still alive after its leader exited.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}

	select {
	case err := <-waited:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftovers of the group
		return exitCode(err)
	case err := <-b.died:
		// An engine that dies under a running test makes every later
		// failure confusing; say so first, then stop the command.
		fmt.Fprintf(os.Stderr, "testbed: %v; stopping %s\n", err, args[0])
		stopCommand()
		return 1
	case <-ctx.Done():
		fmt.Fprintf(os.Stderr, "testbed: interrupted; stopping %s and the engines\n", args[0])
		stopCommand()
		return 130
	}
}

// exitCode maps the command's wait error to this process's exit status.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() > 0 {
		return exit.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "testbed: command: %v\n", err)
	return 1
}
