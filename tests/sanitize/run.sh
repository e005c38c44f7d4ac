#!/bin/sh
# tests/sanitize/run.sh BUILD_DIR [PYTEST ARGS...]: the integration
# suite against the master and worker extension built with ASan and UBSan
# (`make check-sanitize`). Every sanitizer report is written to a log
# directory; the run fails if pytest fails or if any report was written,
# whether or not a test noticed the process that made it die.
set -eu
build=$(cd "$1" && pwd)
shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
logs=$(mktemp -d /tmp/nwsan-XXXXXX)

# The master: leaks are checked at its exit. The workers (tests/sanitize/
# python): not, CPython leaks by design, and a test app's deliberate
# SIGSEGV must kill it as it would without ASan. UBSan stops at the first
# report.
common="log_path=$logs/asan:abort_on_error=0:strict_string_checks=1"
common="$common:detect_stack_use_after_return=1:check_initialization_order=1"
export ASAN_OPTIONS="$common:detect_leaks=1"
# handle_segv=0: test apps that crash on purpose (os.kill(SIGSEGV)) must die
# of SIGSEGV as they do without ASan, not as a report.
export NW_SAN_PYTHON_ASAN_OPTIONS="$common:detect_leaks=0:handle_segv=0"
export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0"
export NARWHAL_BIN="$build/narwhal"
export NARWHAL_TEST_PYTHON="$build/python"
# NARWHAL_TIMEOUT_MULT stays as given: some tests bound a wait from below
# with it too (a timeout must not fire early), and the sanitized build is
# only about twice as slow in C, which is not where the time goes.

status=0
/usr/bin/python3 -m pytest -q -p no:cacheprovider "$@" || status=$?
reports=$(ls "$logs" 2>/dev/null | wc -l)
if [ "$reports" -gt 0 ]; then
	for f in "$logs"/*; do
		echo "=== $f"
		head -80 "$f"
	done
	echo "check-sanitize: $reports sanitizer report(s), kept in $logs"
	exit 1
fi
rm -rf "$logs"
[ "$status" -eq 0 ] || echo "check-sanitize: pytest failed ($status)"
exit "$status"
