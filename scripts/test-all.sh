#!/usr/bin/env bash
# make test: every step (make test-steps) with its whole output, stdout and stderr, both
# shown as it comes and kept in a log; then a scan of that log and of the logs the tests
# leave behind for keys, tokens and passwords (internal/secretscan). None leak today;
# this keeps it so.
#
# Exit status: the steps' when they failed (their error stays the one reported; the
# scan still runs and reports), else the scan's.
#
#   WRENN_TEST_LOG_DIR  where the run's log goes (default .test-logs, git-ignored)
#   WRENN_TEST_DIR      the tests' state directory: *.log files written there during
#                       the run are scanned too (image builds, VM consoles left behind)
#   WRENN_TEST_ARTIFACTS the browser test's artifacts (default test/web/artifacts)
set -uo pipefail
cd "$(dirname "$0")/.."

MAKE=${MAKE:-make}
GO=${GO:-go}
# make -n test: only say what the steps would run.
flags=${MAKEFLAGS:-}
flags=${flags%% *}
if [[ $flags != -* && $flags != *=* && $flags == *n* ]]; then
	exec "$MAKE" --no-print-directory test-steps
fi
log_dir=${WRENN_TEST_LOG_DIR:-.test-logs}
mkdir -p "$log_dir" || exit 1
log=$log_dir/make-test-$(date -u +%Y%m%dT%H%M%SZ).log
# Files written after this one are the run's.
start=$log_dir/.started
touch "$start"

echo "make test: the whole output also goes to $log"
# tee shows every line as it comes (CI streams it); the steps' status is kept apart
# from tee's.
"$MAKE" --no-print-directory test-steps 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# What the tests leave in known places: logs under WRENN_TEST_DIR (debootstrap's,
# console.log of a VM a failed test left) and the browser test's artifacts.
extra=()
if [ -n "${WRENN_TEST_DIR:-}" ] && [ -d "$WRENN_TEST_DIR" ]; then
	while IFS= read -r -d '' f; do extra+=("$f"); done < <(find "$WRENN_TEST_DIR" -xdev -type f -name '*.log' -newer "$start" -print0 2>/dev/null)
fi
artifacts=${WRENN_TEST_ARTIFACTS:-test/web/artifacts}
if [ -d "$artifacts" ]; then
	while IFS= read -r -d '' f; do extra+=("$f"); done < <(find "$artifacts" -type f -newer "$start" -print0 2>/dev/null)
fi

echo "secret scan: $log${extra:+ and ${#extra[@]} log(s) the tests left}"
if CGO_ENABLED=0 "$GO" build -o bin/secretscan ./cmd/secretscan; then
	bin/secretscan -src . "$log" "${extra[@]}"
	scan=$?
else
	echo "secret scan: could not build internal/secretscan" >&2
	scan=2
fi

# Keep the last 5 runs' logs.
ls -1t "$log_dir"/make-test-*.log 2>/dev/null | tail -n +6 | xargs -r rm -f

if [ "$status" -ne 0 ]; then
	[ "$scan" -ne 0 ] && echo "make test: the secret scan failed too (above)" >&2
	echo "make test: FAILED (a test step exited $status; see above and $log)" >&2
	exit "$status"
fi
if [ "$scan" -ne 0 ]; then
	echo "make test: FAILED: every test passed, but the logs hold secrets (the secret scan above)" >&2
	exit 1
fi
