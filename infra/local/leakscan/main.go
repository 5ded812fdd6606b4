// Command leakscan looks for every token and secret the test suite's WeChat
// sandboxes recorded in every log the suite wrote (pkg/testsupport/leakscan). `make
// test` runs it after the Go tests:
//
//	go run ./infra/local/leakscan DIR
//
// It exits 1 naming the file and line of each leak (never the value), and
// 2 when the scan cannot be made.
package main

import (
	"fmt"
	"os"

	"github.com/wxtoken/wxtoken/pkg/testsupport/leakscan"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: leakscan DIR")
		os.Exit(2)
	}
	found, sum, err := leakscan.Scan(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("leakscan: %d tokens and %d secrets looked for in %d files (%.1f MB)\n",
		sum.Tokens, sum.Secrets, sum.Files, float64(sum.Bytes)/1e6)
	for i, f := range found {
		if i == 50 {
			fmt.Printf("... and %d more\n", len(found)-50)
			break
		}
		fmt.Println("LEAK:", f)
	}
	if len(found) > 0 {
		fmt.Printf("leakscan: %d lines hold a token or a secret\n", len(found))
		os.Exit(1)
	}
	fmt.Println("leakscan: no token and no secret in any log")
}
