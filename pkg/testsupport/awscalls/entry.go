package awscalls

import (
	"context"
	"runtime"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// refreshPkg is the refresh core's import path, whose entry points say which
// function a call belongs to.
const refreshPkg = "github.com/wxtoken/wxtoken/pkg/refresh"

// entryPoints maps the refresh core's entry points to the function that
// calls them in production: the scheduled function runs RefreshDue (and,
// under it, everything a sweep does); the API function runs Refresh,
// ForceRefresh and Status. Checked in order, innermost frame first.
var entryPoints = []struct {
	fn string
	id Identity
}{
	{refreshPkg + ".(*Refresher).RefreshDue", Scheduled},
	{refreshPkg + ".(*Refresher).Refresh", API},
	{refreshPkg + ".(*Refresher).ForceRefresh", API},
	{refreshPkg + ".(*Refresher).Status", API},
}

// EntryPoint is a credentials provider for tests that drive the refresh
// core directly: each call is signed as the function whose entry point is on
// the calling goroutine's stack (see entryPoints), and as Core when none is
// (a goroutine the core started, or a test calling an inner function). The
// SDK asks for credentials on every request it signs and does not cache
// them unless told to, so the stack is the caller's.
type EntryPoint struct{}

// Retrieve implements aws.CredentialsProvider.
func (EntryPoint) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: string(entryIdentity()), SecretAccessKey: "test", Source: "awscalls.EntryPoint"}, nil
}

func entryIdentity() Identity {
	pcs := make([]uintptr, 128)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, refreshPkg+".") {
			for _, e := range entryPoints {
				if f.Function == e.fn || strings.HasPrefix(f.Function, e.fn+".") {
					return e.id
				}
			}
		}
		if !more {
			return Core
		}
	}
}
