/*
 * tap.h: just enough of the Test Anything Protocol for the C unit tests.
 *
 * Each check prints "ok N - name" or "not ok N - name" with what was got and
 * expected; done_testing() prints the plan "1..N" and returns the exit
 * status (0 only if every check passed), so a test's main() ends with
 * `return done_testing();`. No framework, no fork, no setup/teardown.
 */
#ifndef NW_TAP_H
#define NW_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One test binary, one run: file-local counters are the whole state. */
static int tap_run;
static int tap_failed;

static inline void
tap_vresult(int pass, const char *file, int line, const char *fmt,
    va_list ap)
{
	printf("%sok %d - ", pass ? "" : "not ", ++tap_run);
	vprintf(fmt, ap);
	putchar('\n');
	if (!pass) {
		tap_failed++;
		printf("#   Failed test at %s line %d.\n", file, line);
	}
}

static inline int
tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vresult(pass, file, line, fmt, ap);
	va_end(ap);
	return pass;
}

static inline int
tap_is_int(long long got, long long want, const char *file, int line,
    const char *fmt, ...)
{
	va_list ap;
	int pass = got == want;

	va_start(ap, fmt);
	tap_vresult(pass, file, line, fmt, ap);
	va_end(ap);
	if (!pass)
		printf("#          got: %lld\n#     expected: %lld\n", got,
		    want);
	return pass;
}

static inline int
tap_is_double(double got, double want, const char *file, int line,
    const char *fmt, ...)
{
	va_list ap;
	double diff = got > want ? got - want : want - got;
	int pass = diff < 1e-9;

	va_start(ap, fmt);
	tap_vresult(pass, file, line, fmt, ap);
	va_end(ap);
	if (!pass)
		printf("#          got: %g\n#     expected: %g\n", got, want);
	return pass;
}

static inline int
tap_is_str(const char *got, const char *want, const char *file, int line,
    const char *fmt, ...)
{
	va_list ap;
	int pass = got == want ||
	    (got != NULL && want != NULL && strcmp(got, want) == 0);

	va_start(ap, fmt);
	tap_vresult(pass, file, line, fmt, ap);
	va_end(ap);
	if (!pass) {
		printf("#          got: %s%s%s\n", got ? "'" : "",
		    got ? got : "NULL", got ? "'" : "");
		printf("#     expected: %s%s%s\n", want ? "'" : "",
		    want ? want : "NULL", want ? "'" : "");
	}
	return pass;
}

static inline void
tap_skip(const char *why)
{
	printf("ok %d # skip %s\n", ++tap_run, why);
}

static inline void
tap_diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static inline int
tap_done(void)
{
	printf("1..%d\n", tap_run);
	if (tap_failed > 0)
		printf("# failed %d of %d\n", tap_failed, tap_run);
	fflush(stdout);
	return tap_failed > 0 ? 1 : 0;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)                                                 \
	tap_is_int((long long)(got), (long long)(want), __FILE__, __LINE__,    \
	    __VA_ARGS__)
#define is_double(got, want, ...)                                              \
	tap_is_double((got), (want), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...)                                                 \
	tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)
#define skip(why) tap_skip(why)
#define diag(...) tap_diag(__VA_ARGS__)
#define done_testing() tap_done()

#endif
