#!/usr/bin/env bash
# Runs every fuzz target of the module (func FuzzXxx in a _test.go file) for
# FUZZTIME each (default 60s) and writes the table fuzz.md into the
# directory given as $1, for BENCHMARKS.md. Exits 1 if a target failed; the
# failing input is then under the package's testdata/fuzz/ as a new seed.
set -euo pipefail
out=${1:?usage: fuzz.sh DIR}
fuzztime=${FUZZTIME:-60s}
GO=${GO:-go}
mkdir -p "$out"
table="$out/fuzz.md"
{
	echo "## Fuzzing"
	echo
	echo "Each fuzz target runs for $fuzztime with \`go test -fuzz\` (coverage-guided), starting from its seed corpus in the package's testdata/fuzz/; \`make test\` runs the seeds as ordinary tests."
	echo
	echo "| Target | Package | Time | Executions | New interesting inputs | Result |"
	echo "|---|---|---|---:|---:|---|"
} > "$table"
failed=0
while read -r file name; do
	pkg=./$(dirname "$file")
	log=$(mktemp)
	if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" > "$log" 2>&1; then
		result=pass
	else
		result="**FAIL** (the input is in $pkg/testdata/fuzz/$name)"
		failed=1
		tail -n 30 "$log" >&2
	fi
	last=$(grep 'fuzz: elapsed' "$log" | tail -n 1 || true)
	execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<< "$last")
	new=$(sed -n 's/.*new interesting: \([0-9]*\).*/\1/p' <<< "$last")
	echo "| $name | $pkg | $fuzztime | ${execs:-?} | ${new:-?} | $result |" >> "$table"
	echo "fuzz: $pkg $name: $result, ${execs:-?} executions"
	rm -f "$log"
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' pkg functions infra | sed 's/:func / /' | sort)
exit $failed
