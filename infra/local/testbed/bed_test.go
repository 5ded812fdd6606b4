package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary plays three parts, chosen by roleEnv: the test itself, the
// testbed command (role "bed": main's run with the arguments it was given),
// and both engines (role "engine": a stand-in for java and moto_server that
// answers HTTP on the port it is told). Each stand-in engine also starts a
// `sleep` in its process group, as a JVM or a Python server may start helpers:
// it does not die with its parent, so only a process-group kill ends it.
const (
	roleEnv   = "WXTOKEN_TESTBED_TEST_ROLE"
	pidDirEnv = "WXTOKEN_TESTBED_TEST_PIDDIR" // where engines write their PIDs
	muteEnv   = "WXTOKEN_TESTBED_TEST_MUTE"   // an engine that never answers: "dynamodb" or "moto"
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "bed":
		// The engines the bed starts inherit the environment.
		_ = os.Setenv(roleEnv, "engine")
		os.Exit(run())
	case "engine":
		os.Exit(fakeEngine(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeEngine stands in for DynamoDB Local (`java ... -port N`) or moto
// server (`moto_server -H host -p N`). It records "pid pgid helper-pid" in
// <pidDir>/<name>.pid, then serves HTTP on the port until killed.
func fakeEngine(args []string) int {
	name, port := "", ""
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-port":
			name, port = "dynamodb", args[i+1]
		case "-p":
			name, port = "moto", args[i+1]
		}
	}
	if name == "" {
		fmt.Fprintf(os.Stderr, "fake engine: no port in %q\n", args)
		return 2
	}
	helper := exec.Command("sleep", "300")
	if err := helper.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "fake engine: start helper: %v\n", err)
		return 2
	}
	pgid, _ := syscall.Getpgid(0)
	rec := fmt.Sprintf("%d %d %d", os.Getpid(), pgid, helper.Process.Pid)
	if err := os.WriteFile(filepath.Join(os.Getenv(pidDirEnv), name+".pid"), []byte(rec), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "fake engine: %v\n", err)
		return 2
	}
	if os.Getenv(muteEnv) == name {
		select {} // started, never ready
	}
	err := http.ListenAndServe("127.0.0.1:"+port, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest) // like an engine asked for no API: any answer means ready
	}))
	fmt.Fprintf(os.Stderr, "fake engine: %v\n", err)
	return 1
}

// TestBedStopsWhatItStarted runs the testbed with stand-in engines and checks
// that, however the run ends, the engines, their helpers and the command's
// processes are gone when the testbed exits, and the exit status says how
// the run ended.
func TestBedStopsWhatItStarted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads process states from /proc")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		command    string // a shell script; it writes its PID to cmd.pid
		mute       string // engine that never answers
		interrupt  bool   // SIGINT the bed once the command runs
		wantStatus int
		wantCmd    bool // the command must have started
	}{
		{
			name: "command fails", command: `echo $$ > cmd.pid; sleep 300 & exit 3`,
			wantStatus: 3, wantCmd: true,
		},
		{
			name: "interrupted", command: `echo $$ > cmd.pid; sleep 300 & wait`, interrupt: true,
			wantStatus: 130, wantCmd: true,
		},
		{
			name: "engine never answers", command: `echo $$ > cmd.pid`, mute: "dynamodb",
			wantStatus: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ddb := filepath.Join(dir, "dynamodb-local")
			if err := os.Mkdir(ddb, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ddb, "DynamoDBLocal-0.jar"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := os.Create(filepath.Join(dir, "bed.out"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()

			bed := exec.Command(self,
				"-dynamodb-local", ddb, "-java", self, "-moto", self,
				"-logdir", filepath.Join(dir, "logs"), "-start-timeout", "2s",
				"--", "sh", "-c", tt.command)
			bed.Dir = dir // the command writes cmd.pid here
			bed.Env = append(os.Environ(), roleEnv+"=bed", pidDirEnv+"="+dir, muteEnv+"="+tt.mute)
			bed.Stdout, bed.Stderr = out, out
			if err := bed.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- bed.Wait() }()
			t.Cleanup(func() {
				// Only after a failure: by then a PID of a passed run may
				// belong to someone else.
				if t.Failed() {
					killAll(bed.Process.Pid, dir)
				}
			})
			output := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }

			if tt.interrupt {
				if _, err := waitFile(filepath.Join(dir, "cmd.pid"), 20*time.Second); err != nil {
					t.Fatalf("the command did not start: %v; testbed output:\n%s", err, output())
				}
				if err := bed.Process.Signal(os.Interrupt); err != nil {
					t.Fatal(err)
				}
			}
			var werr error
			select {
			case werr = <-exited:
			case <-time.After(30 * time.Second):
				t.Fatalf("testbed still running after 30s; output:\n%s", output())
			}
			status := 0
			if ee := (*exec.ExitError)(nil); errors.As(werr, &ee) {
				status = ee.ExitCode() // -1 when a signal ended it
			} else if werr != nil {
				t.Fatal(werr)
			}
			if status != tt.wantStatus {
				t.Errorf("testbed exit status = %d, want %d; output:\n%s", status, tt.wantStatus, output())
			}

			// Every process the run started, with the group it leads.
			var procs []proc
			for _, engine := range []string{"dynamodb", "moto"} {
				f, err := readInts(filepath.Join(dir, engine+".pid"))
				if err != nil || len(f) != 3 {
					t.Fatalf("the %s stand-in did not start (%v); output:\n%s", engine, err, output())
				}
				procs = append(procs,
					proc{engine + " engine", f[0], f[1]},
					proc{engine + " helper", f[2], f[1]})
				if f[0] != f[1] {
					t.Errorf("%s engine runs in process group %d, want its own group", engine, f[1])
				}
			}
			if f, err := readInts(filepath.Join(dir, "cmd.pid")); err == nil && len(f) == 1 {
				procs = append(procs, proc{"command", f[0], f[0]})
			} else if tt.wantCmd {
				t.Fatalf("the command did not start (%v); output:\n%s", err, output())
			}
			deadline := time.Now().Add(5 * time.Second)
			for _, p := range procs {
				if err := waitGone(p, deadline); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// proc is a process the bed started, directly or not, and its process group.
type proc struct {
	what      string
	pid, pgid int
}

// waitGone waits until neither p nor any other member of its process group is
// running, or the deadline passes. Zombies count as gone: the container's init
// may not reap them.
func waitGone(p proc, deadline time.Time) error {
	for {
		running := []int{}
		if state(p.pid) != "" {
			running = append(running, p.pid)
		}
		for _, pid := range groupMembers(p.pgid) {
			if pid != p.pid {
				running = append(running, pid)
			}
		}
		if len(running) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d, group %d): processes %v still running 5s after the testbed exited", p.what, p.pid, p.pgid, running)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// state returns a process's state letter from /proc, or "" when it does not
// exist or is a zombie.
func state(pid int) string {
	s, _ := stat(pid)
	if s == "Z" {
		return ""
	}
	return s
}

// stat returns the state and process group of pid from /proc/<pid>/stat.
func stat(pid int) (string, int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return "", 0
	}
	pgrp, _ := strconv.Atoi(f[2])
	return f[0], pgrp
}

// groupMembers lists the running (non-zombie) processes of process group pgid.
func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, g := stat(pid); g == pgid && s != "" && s != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitFile waits until path exists and is not empty, and returns its content.
func waitFile(path string, timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			return b, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not written within %s", filepath.Base(path), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readInts reads the whitespace-separated integers of a file.
func readInts(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
		out = append(out, n)
	}
	return out, nil
}

// killAll ends whatever a failed run left behind: the bed, and every process
// and group recorded in dir's PID files that still runs.
func killAll(bedPID int, dir string) {
	if state(bedPID) != "" {
		_ = syscall.Kill(bedPID, syscall.SIGKILL)
	}
	for _, name := range []string{"dynamodb.pid", "moto.pid", "cmd.pid"} {
		f, _ := readInts(filepath.Join(dir, name))
		for i, n := range f {
			if n <= 1 || (state(n) == "" && len(groupMembers(n)) == 0) {
				continue
			}
			if i == 1 || name == "cmd.pid" {
				_ = syscall.Kill(-n, syscall.SIGKILL) // a group the run created
			}
			_ = syscall.Kill(n, syscall.SIGKILL)
		}
	}
}
