#!/usr/bin/env bash
# Run every Go fuzz target (func FuzzX in a _test.go file) for FUZZTIME each, one at a
# time. `go test` alone runs only their committed corpus (testdata/fuzz) as seeds;
# this explores beyond it. A failing input is written to the package's
# testdata/fuzz/FuzzX/ and printed: commit it with the fix, so it stays a test.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-5000x}
GO=${GO:-go}
start=$SECONDS
n=0
while IFS= read -r file; do
	pkg=./$(dirname "$file")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$file"); do
		echo "fuzz $pkg $target for $FUZZTIME"
		# One worker: the machine's other core runs what the targets start (PostgreSQL, envd).
		$GO test -timeout 5m -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -parallel 1 "$pkg" | grep -v '^fuzz: elapsed'
		n=$((n + 1))
	done
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz' | sort)
echo "fuzzed $n targets for $FUZZTIME each in $((SECONDS - start)) s"
