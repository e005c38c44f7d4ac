/*
 * sdnotify.c: what the master tells systemd, through libsystemd.
 *
 * READY=1 only when the first generation is fully live, RELOADING=1 with
 * MONOTONIC_USEC when a reload starts and READY=1 when it ends, a STATUS=
 * line that is always current, STOPPING=1, and WATCHDOG=1 from the loop.
 * Without NOTIFY_SOCKET every call here is a cheap no-op.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "master.h"

static const char *const outcome_names[] = {
	[NW_RELOAD_NONE] = "none",
	[NW_RELOAD_OK] = "ok",
	[NW_RELOAD_INVALID_CONFIG] = "refused (invalid config)",
	[NW_RELOAD_ROLLED_BACK] = "rolled back",
	[NW_RELOAD_DEPENDENCY] = "rolled back (a dependency is down)",
	[NW_RELOAD_WATCH_ROLLED_BACK] = "rolled back by the watch (5xx)",
};

/*
 * A slow boot must not trip TimeoutStartSec (systemd times reloads with it
 * too): allow the longest a generation can take to be judged.
 */
static unsigned long long
worst_boot_usec(struct nw_master *m)
{
	const struct nw_config *c = m->current->config;

	return (unsigned long long)((c->boot_timeout * (c->boot_retries + 1) +
	    c->min_uptime + 10) * 1e6);
}

void
nw_sd_extend(struct nw_master *m)
{
	if (m->sd_notify)
		sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", worst_boot_usec(m));
}

/* The timer firing at all is the proof that the loop is not stuck. */
static void
on_watchdog(struct ev_loop *loop, ev_timer *t, int revents)
{
	sd_notify(0, "WATCHDOG=1");
}

void
nw_sd_init(struct nw_master *m)
{
	uint64_t usec = 0;

	m->sd_notify = getenv("NOTIFY_SOCKET") != NULL;
	if (!m->sd_notify)
		return;
	sd_notifyf(0, "MAINPID=%d\nSTATUS=starting generation 1",
	    (int)getpid());
	nw_sd_extend(m);
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		ev_timer_init(&m->sd_watchdog, on_watchdog, 0.,
		    usec / 2e6);
		ev_timer_start(m->loop, &m->sd_watchdog);
	}
}

void
nw_sd_ready(struct nw_master *m)
{
	if (!m->sd_notify)
		return;
	m->sd_status[0] = '\0';
	nw_sd_status(m);
	sd_notify(0, "READY=1");
}

void
nw_sd_reloading(struct nw_master *m)
{
	struct timespec ts;

	if (!m->sd_notify)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nEXTEND_TIMEOUT_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
		(unsigned long long)ts.tv_nsec / 1000ULL,
	    worst_boot_usec(m));
}

void
nw_sd_stopping(struct nw_master *m)
{
	if (m->sd_notify)
		sd_notify(0, "STOPPING=1");
}

void
nw_sd_status(struct nw_master *m)
{
	char status[sizeof m->sd_status];
	struct nw_generation *g = m->current;

	if (!m->sd_notify || g == NULL)
		return;
	snprintf(status, sizeof status,
	    "generation %u: %d/%d workers live, tree %s%s; last reload: %s",
	    g->id, nw_master_live_count(m, g), m->target, g->tree,
	    nw_canary_active(m) ? "; watching a canary" :
	    m->reload.gen ? "; reloading" :
	    nw_postlive_active(m) ? "; watching it after the switch" : "",
	    outcome_names[m->last_outcome]);
	if (strcmp(status, m->sd_status) == 0)
		return;
	memcpy(m->sd_status, status, sizeof status);
	sd_notifyf(0, "STATUS=%s", status);
}
