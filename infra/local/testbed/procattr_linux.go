package main

import (
	"runtime"
	"syscall"
)

// engineAttr puts a child (an engine, or the command) in its own process
// group and has the kernel kill it if this process dies without stopping it
// (SIGKILL, a crash).
func engineAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// startLocked runs start on a locked OS thread: Pdeathsig fires when the
// thread that forked exits, so it must not be a thread Go may retire.
func startLocked(start func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return start()
}
