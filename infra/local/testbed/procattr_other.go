//go:build !linux

package main

import "syscall"

// engineAttr puts an engine in its own process group.
func engineAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func startLocked(start func() error) error { return start() }
