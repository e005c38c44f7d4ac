/*
 * master.c: the worker's side of the master protocol, and what it reports.
 *
 * The control socket (one SOCK_SEQPACKET datagram a message): `live` turns
 * the public sockets on, EOF means the master is gone (a graceful stop);
 * the heartbeat with the counters, and `retire` (conn.c, when the request
 * budget is used up). The counters are a few integer adds per request; the
 * access log lines are buffered here too. `booted` is the Python glue's,
 * which says it before the engine runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"

/* Upper bounds of the latency buckets, in microseconds; the last is +Inf. */
static const int64_t lat_bounds_us[NW_LAT_BUCKETS - 1] = {5000, 10000, 25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

int64_t
nw_engine_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One answer: its status class, its bytes, and (with a start) its time. */
void
nw_engine_count(
    struct nw_engine *e, int status, uint64_t sent, int64_t started_ns)
{
	struct nw_counters *k = &e->counters;

	k->bytes += sent;
	if (status >= 100 && status < 600)
		k->status[status / 100]++;
	switch (status) {
	case 500:
		k->s500++;
		break;
	case 502:
		k->s502++;
		break;
	case 503:
		k->s503++;
		break;
	case 504:
		k->s504++;
		break;
	}
	if (started_ns > 0) {
		int64_t us = (nw_engine_now_ns() - started_ns) / 1000;
		int i = 0;

		if (us < 0)
			us = 0;
		while (i < NW_LAT_BUCKETS - 1 && us > lat_bounds_us[i])
			i++;
		k->lat[i]++;
		k->latsum_us += (uint64_t)us;
	}
}

/*
 * The heartbeat datagram (the wire format is in the project's plan):
 * "hb <served> inflight=.. bytes=.. s1=.. .. s5=.. s500=.. s502=.. s503=..
 * s504=.. lat=c0,..,c11 latsum_us=.. ws=..". Returns its length, or 0 if
 * cap is too small.
 */
size_t
nw_engine_heartbeat_format(char *out, size_t cap, const struct nw_counters *k,
    size_t inflight, unsigned ws)
{
	size_t len;
	int n, i;

	n = snprintf(out, cap,
	    "hb %llu inflight=%zu bytes=%llu s1=%llu s2=%llu s3=%llu s4=%llu "
	    "s5=%llu s500=%llu s502=%llu s503=%llu s504=%llu lat=",
	    (unsigned long long)k->served, inflight,
	    (unsigned long long)k->bytes, (unsigned long long)k->status[1],
	    (unsigned long long)k->status[2], (unsigned long long)k->status[3],
	    (unsigned long long)k->status[4], (unsigned long long)k->status[5],
	    (unsigned long long)k->s500, (unsigned long long)k->s502,
	    (unsigned long long)k->s503, (unsigned long long)k->s504);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	len = (size_t)n;
	for (i = 0; i < NW_LAT_BUCKETS; i++) {
		n = snprintf(out + len, cap - len, i ? ",%llu" : "%llu",
		    (unsigned long long)k->lat[i]);
		if (n < 0 || (size_t)n >= cap - len)
			return 0;
		len += (size_t)n;
	}
	n = snprintf(out + len, cap - len, " latsum_us=%llu ws=%u",
	    (unsigned long long)k->latsum_us, ws);
	if (n < 0 || (size_t)n >= cap - len)
		return 0;
	return len + (size_t)n;
}

/* A datagram to the master; a broken socket means it is gone: stop. */
void
nw_engine_control_send(struct nw_engine *e, const char *msg)
{
	if (e->control_fd < 0)
		return;
	if (send(e->control_fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) <
	        0 &&
	    errno != EAGAIN && errno != EINTR) {
		nw_log("control socket: %s; stopping", strerror(errno));
		e->stop_requested = true;
		if (e->drv->stop_requested)
			e->drv->stop_requested(e);
	}
}

/*
 * The heartbeat, when due (force: now, e.g. the last one before a
 * graceful exit, so a recycled worker's counts are never lost).
 */
void
nw_engine_heartbeat(struct nw_engine *e, bool force)
{
	char msg[512];
	size_t n;

	if (e->heartbeat_ms <= 0 && !force)
		return;
	if (!force && e->clock.mono_ms < e->next_heartbeat)
		return;
	e->next_heartbeat = e->clock.mono_ms + e->heartbeat_ms;
	if (e->control_fd < 0)
		return;
	n = nw_engine_heartbeat_format(
	    msg, sizeof msg, &e->counters, nw_engine_inflight(e), e->ws_open);
	if (n > 0)
		nw_engine_control_send(e, msg);
}

void
nw_engine_control_readable(struct nw_engine *e)
{
	char msg[128];
	ssize_t n;

	n = recv(e->control_fd, msg, sizeof msg - 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		nw_log("control socket closed: the master is gone, stopping");
		if (e->epfd >= 0)
			epoll_ctl(e->epfd, EPOLL_CTL_DEL, e->control_fd, NULL);
		close(e->control_fd);
		e->control_fd = -1;
		e->stop_requested = true;
		if (e->drv->stop_requested)
			e->drv->stop_requested(e);
		return;
	}
	msg[n] = '\0';
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	if (strcmp(msg, "live") == 0)
		nw_engine_go_live(e);
	else if (strcmp(msg, "restart") == 0)
		e->restarting = true; /* a TERM for a reload or a recycle follows */
	else if (strcmp(msg, "accept") == 0)
		nw_listeners_accept_queued(e); /* another worker died */
	else
		nw_log("control socket: unknown message \"%.60s\"", msg);
}

/* Access log */

/* path: NULL for none, "-" for stdout. -1 with errno. */
int
nw_engine_alog_open(struct nw_engine *e, const char *path)
{
	if (path == NULL)
		return 0;
	if ((e->alog_path = strdup(path)) == NULL)
		return -1;
	e->alog_fd = nw_accesslog_open_path(path);
	return e->alog_fd < 0 ? -1 : 0;
}

/* USR1: after a rotation. */
int
nw_engine_alog_reopen(struct nw_engine *e)
{
	nw_engine_alog_flush(e);
	if (e->alog_path != NULL &&
	    nw_accesslog_reopen_path(e->alog_path, &e->alog_fd) < 0) {
		nw_log("cannot reopen the access log %s: %s", e->alog_path,
		    strerror(errno));
		return -1;
	}
	return 0;
}
