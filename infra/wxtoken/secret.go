package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

// maxSecretLen bounds a secret read from stdin: an AppSecret is 32
// characters, a WeCom corpsecret 43.
const maxSecretLen = 512

// readSecret reads an app's secret: the first line of in. When in is a
// terminal it prompts on prompt and turns echo off where it can. The value
// is never written anywhere but the returned string.
func readSecret(in io.Reader, prompt io.Writer, app string) (string, error) {
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		fmt.Fprintf(prompt, "AppSecret of %s (WeCom: the application's corpsecret): ", app)
		restore := echoOff(f)
		if restore == nil {
			fmt.Fprint(prompt, "(this terminal will show it) ")
			restore = func() {}
		}
		defer func() {
			restore()
			fmt.Fprintln(prompt)
		}()
	}
	line, err := bufio.NewReaderSize(io.LimitReader(in, maxSecretLen+2), maxSecretLen+2).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", wrap(ExitFailed, err, "read the secret from stdin")
	}
	secret := strings.TrimRight(line, "\r\n")
	switch {
	case secret == "":
		return "", fail(ExitUsage, "no secret on stdin: pipe it in, e.g. `wxtoken apps add %s ... < secret.txt` (the first line is the secret)", app)
	case len(secret) > maxSecretLen:
		return "", fail(ExitUsage, "the secret on stdin is over %d characters: is it the secret?", maxSecretLen)
	case strings.IndexFunc(secret, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "", fail(ExitUsage, "the secret on stdin holds spaces or control characters: copy it again from the console")
	}
	return secret, nil
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
