package main

import (
	"errors"
	"fmt"
)

// ExitCode is what the command returns to the shell; scripts may rely on it.
type ExitCode int

// The exit codes (documented in the command's help).
const (
	ExitOK       ExitCode = 0 // the operation succeeded
	ExitFailed   ExitCode = 1 // the operation failed (AWS, the API, the network); the message says what to do
	ExitUsage    ExitCode = 2 // the command line is wrong
	ExitNotFound ExitCode = 3 // no such app, stack or token
	ExitInvalid  ExitCode = 4 // the registration was refused by validation (or the name or appid is taken)
	ExitWeChat   ExitCode = 5 // WeChat refused the app's credentials or IP (the app stays registered)
)

// cliError is an error that carries the exit code it ends the command with.
// Its message is shown to the operator as is, and never holds a secret or a
// token.
type cliError struct {
	code ExitCode
	msg  string
	err  error
}

func (e *cliError) Error() string {
	if e.err == nil {
		return e.msg
	}
	if e.msg == "" {
		return e.err.Error()
	}
	return e.msg + ": " + e.err.Error()
}

func (e *cliError) Unwrap() error { return e.err }

// fail returns an error that ends the command with code.
func fail(code ExitCode, format string, args ...any) error {
	return &cliError{code: code, msg: fmt.Sprintf(format, args...)}
}

// wrap returns err with context, ending the command with code.
func wrap(code ExitCode, err error, format string, args ...any) error {
	return &cliError{code: code, msg: fmt.Sprintf(format, args...), err: err}
}

// codeOf is the exit code err ends the command with: its own, or
// ExitFailed.
func codeOf(err error) ExitCode {
	if err == nil {
		return ExitOK
	}
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code
	}
	return ExitFailed
}
