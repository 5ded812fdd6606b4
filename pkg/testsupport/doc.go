// Package testsupport holds what wxtoken's tests need and its functions never
// link: the local AWS engines (awstest), a Lambda runtime API stand-in
// (lambdatest), the whole local stack for consumer tests (stacktest) and the
// scan of test logs for tokens and secrets (leakscan). Everything under this
// path is test support; `go list -deps ./functions/...` shows none of it.
package testsupport
