// Command wxtoken is the operator's tool for a wxtoken deployment: it
// registers WeChat apps (their secret in SSM, their item in the table),
// changes, pauses, unblocks and removes them, lists their state, and asks
// the stack's API for a first token. It works with the operator's own AWS
// credentials against a deployed stack (--stack, whose CloudFormation
// outputs name the table, the parameter prefix and the API) or against
// `make dev` (--local).
//
//	go install ./infra/wxtoken
//	wxtoken --stack wxtoken apps add shop --appid wx0123456789abcdef --kind offiaccount < secret.txt
//	wxtoken --local apps list
//
// `wxtoken help` lists the commands and the exit codes.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
