/*
 * log.c: the worker's own log lines, on stderr.
 *
 * One line per call, in one write(2): the master reads the worker's stderr
 * and relays it line by line, so a line must never be split. Every layer
 * logs through here; nothing here knows who called.
 */
#include <stdio.h>
#include <unistd.h>

#include "core/log.h"

void
nw_vlog(const char *fmt, va_list ap)
{
	char line[512];
	int n;

	n = vsnprintf(line, sizeof line - 1, fmt, ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	if (write(2, line, (size_t)n) < 0)
		(void)0;
}

void
nw_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	nw_vlog(fmt, ap);
	va_end(ap);
}
