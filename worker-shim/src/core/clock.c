/*
 * clock.c: the clock a loop reads once per turn.
 *
 * A coarse monotonic time for deadlines, and the wall clock's Date header
 * and access log stamp, formatted again only when the second changes.
 */
#include <stdio.h>
#include <time.h>

#include "core/http.h"

static const char days[7][4] = {
    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void
nw_clock_update(struct nw_clock *c)
{
	struct timespec ts;
	struct tm tm;
	long off;
	int n;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	c->mono_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec == c->wall && c->date_len != 0)
		return;
	c->wall = ts.tv_sec;
	gmtime_r(&c->wall, &tm);
	n = snprintf(c->date, sizeof c->date,
	    "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday],
	    tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	c->date_len = (size_t)n;
	localtime_r(&c->wall, &tm);
	off = tm.tm_gmtoff / 60;
	n = snprintf(c->logtime, sizeof c->logtime,
	    "[%02d/%s/%04d:%02d:%02d:%02d %c%02ld%02ld]", tm.tm_mday,
	    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, off < 0 ? '-' : '+', (off < 0 ? -off : off) / 60,
	    (off < 0 ? -off : off) % 60);
	c->logtime_len = (size_t)n;
}
