/*
 * control.c: the master's control socket, the server side of `narwhal reload`
 * and `narwhal status`.
 *
 * A client sends one line (`reload`, `reload wait`, `rollback`, `rollback
 * wait`, `status`, `status json`) and reads lines back until the master
 * closes. The socket lives in the
 * runtime directory, owner-only. This file answers questions and forwards
 * requests; it decides nothing about workers.
 *
 * However its clients behave, the master must stay free to supervise: at
 * most clients_max at once (the oldest silent one makes room for a new
 * one), a few seconds to send the command, non-blocking writes, and a pause
 * rather than a busy loop when accept() runs out of file descriptors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

/* Time to send the command line; `reload wait` then waits unbounded. */
#define CLIENT_TIMEOUT 5.0
/* Clients at once, at most; never more than a quarter of the fd limit. */
#define CLIENTS_MAX 32
/* After EMFILE or ENFILE in accept(), before trying again. */
#define ACCEPT_PAUSE 0.5

struct nw_control_client {
	int fd;
	ev_io io;
	ev_timer timeout;             /* the command must come by then */
	char line[128];
	size_t len;
	int waiting;                  /* for a reload's outcome */
	int until_watching;           /* ...or only until its canary is watched */
	unsigned long wait_until;     /* reloads_finished to reach */
	TAILQ_ENTRY(nw_control_client) entry;
};

static const char *const outcome_words[] = {
	[NW_RELOAD_NONE] = "none",
	[NW_RELOAD_OK] = "ok",
	[NW_RELOAD_INVALID_CONFIG] = "refused",
	[NW_RELOAD_ROLLED_BACK] = "rolled-back",
	[NW_RELOAD_DEPENDENCY] = "dependency-down",
	[NW_RELOAD_WATCH_ROLLED_BACK] = "watch-rolled-back",
};

static void
accept_resume(struct nw_master *m)
{
	if (m->control_fd >= 0 && !ev_is_active(&m->control_retry))
		ev_io_start(m->loop, &m->control_io);
}

static void
client_close(struct nw_master *m, struct nw_control_client *c)
{
	ev_io_stop(m->loop, &c->io);
	ev_timer_stop(m->loop, &c->timeout);
	close(c->fd);
	TAILQ_REMOVE(&m->clients, c, entry);
	m->nclients--;
	free(c);
	accept_resume(m);
}

static void
client_write(struct nw_control_client *c, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a client that stopped reading loses lines */
		buf += n;
		len -= (size_t)n;
	}
}

static void
client_printf(struct nw_control_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
client_printf(struct nw_control_client *c, const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0)
		client_write(c, buf, (size_t)n < sizeof buf ? (size_t)n
							     : sizeof buf - 1);
}

/* JSON strings: paths and reasons may hold quotes or control bytes. */
static void
json_string(char *out, size_t outlen, const char *s)
{
	size_t j = 0;

	if (outlen < 3)
		return;
	out[j++] = '"';
	for (; s != NULL && *s != '\0' && j + 8 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			out[j++] = '\\';
			out[j++] = (char)ch;
		} else if (ch < 0x20) {
			j += (size_t)snprintf(out + j, outlen - j, "\\u%04x",
			    ch);
		} else {
			out[j++] = (char)ch;
		}
	}
	out[j++] = '"';
	out[j] = '\0';
}

static void
send_result(struct nw_master *m, struct nw_control_client *c)
{
	char *lines, *line, *save = NULL;

	client_printf(c, "result: %s %s\n", outcome_words[m->last_outcome],
	    m->last_reason);
	if (m->last_probe[0] != '\0')
		client_printf(c, "probe: %s\n", m->last_probe);
	if (m->last_stderr == NULL)
		return;
	lines = nw_strdup(m->last_stderr);
	for (line = strtok_r(lines, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		client_printf(c, "stderr: %s\n", line);
	free(lines);
}

/* Workers that serve past their request budget, and why. */
static int
past_budget(struct nw_master *m)
{
	struct nw_worker *w;
	int n = 0;

	TAILQ_FOREACH(w, &m->workers, entry)
		if (nw_worker_counts_as_capacity(w) && w->budget > 0 &&
		    w->requests >= w->budget)
			n++;
	return n;
}

static void
status_text(struct nw_master *m, struct nw_control_client *c)
{
	double now = ev_now(m->loop);
	struct nw_generation *g;
	struct nw_worker *w;
	int over = past_budget(m);

	client_printf(c, "master pid %d, generation %u, %d/%d workers live\n",
	    (int)getpid(), m->current->id,
	    nw_master_live_count(m, m->current), m->target);
	client_printf(c, "tree %s\n", m->current->tree);
	if (m->reload.gen != NULL)
		client_printf(c, "reloading: generation %u, tree %s\n",
		    m->reload.gen->id, m->reload.gen->tree);
	client_printf(c, "last reload: %s%s%s\n",
	    outcome_words[m->last_outcome], m->last_reason[0] ? ": " : "",
	    m->last_reason);
	if (m->recycle_held[0] != '\0')
		client_printf(c, "recycling held back: %s\n", m->recycle_held);
	if (over > 0)
		client_printf(c, "past budget: %d live worker%s served past "
		    "max_requests, waiting for a replacement\n", over,
		    over == 1 ? "" : "s");
	if (m->canary.verdict[0] != '\0')
		client_printf(c, "watch: %s\n", m->canary.verdict);
	client_printf(c, "%4s %-8s %10s %8s %6s %8s\n", "GEN", "ROLE",
	    "REQUESTS", "5XX", "5XX%", "INFLIGHT");
	TAILQ_FOREACH(g, &m->generations, entry) {
		struct nw_counters sum;
		unsigned inflight;
		int busy, idle;

		nw_metrics_sum(m, g, &sum);
		nw_metrics_load(m, g, &inflight, &busy, &idle);
		client_printf(c, "%4u %-8s %10llu %8llu %5.1f%% %8u\n", g->id,
		    g == m->current ? "current"
		    : g == m->reload.gen ? "starting" : "old",
		    sum.requests, sum.status[5], 100 * nw_metrics_ratio(&sum),
		    inflight);
	}
	/* New columns go last: scripts split these rows by position. */
	client_printf(c, "%6s %4s %-9s %8s %8s %10s %10s %8s %4s %7s %8s\n",
	    "WORKER", "GEN", "STATE", "PID", "AGE", "REQUESTS", "RSS", "BUDGET",
	    "SLOT", "5XX", "INFLIGHT");
	TAILQ_FOREACH(w, &m->workers, entry) {
		long long rss = w->pid > 0 ? nw_proc_rss(w->pid) : -1;
		char rss_text[24] = "-", budget[24] = "-", probe[512];

		if (rss > 0)
			snprintf(rss_text, sizeof rss_text, "%lldK", rss / 1024);
		if (w->budget > 0)
			snprintf(budget, sizeof budget, "%lu", w->budget);
		client_printf(c,
		    "%6u %4u %-9s %8d %7.0fs %10lu %10s %8s %4u %7llu %8u\n",
		    w->id, w->gen->id, nw_worker_state_name(w->state),
		    (int)w->pid, w->pid > 0 ? now - w->spawned_at : 0.,
		    w->requests, rss_text, budget, w->slot,
		    w->counted.status[5], w->inflight);
		if (!nw_worker_is_booting(w) ||
		    nw_worker_probe_text(w, probe, sizeof probe)[0] == '\0')
			continue;
		client_printf(c, "%6s probe: %s (%d of %d failures, %.0fs "
		    "left)\n", "", probe, w->probe_failures,
		    w->gen->config->ready_failures,
		    w->spawned_at + w->gen->config->boot_timeout - now);
	}
}

/* Every counter of c as JSON members (no braces). */
static void
counters_json(struct nw_control_client *c, const struct nw_counters *n)
{
	client_printf(c,
	    "\"requests\": %llu, \"status\": {\"1xx\": %llu, \"2xx\": %llu, "
	    "\"3xx\": %llu, \"4xx\": %llu, \"5xx\": %llu, \"500\": %llu, "
	    "\"502\": %llu, \"503\": %llu, \"504\": %llu}, "
	    "\"bytes\": %llu, \"latency_sum\": %.6f, \"latency_buckets\": [",
	    n->requests, n->status[1], n->status[2], n->status[3],
	    n->status[4], n->status[5], n->s500, n->s502, n->s503, n->s504,
	    n->bytes, n->latsum_us / 1e6);
	for (int i = 0; i < NW_LAT_BUCKETS; i++)
		client_printf(c, "%s%llu", i ? ", " : "", n->lat[i]);
	client_printf(c, "]");
}

/* The master's own counters, the generations and the watch. */
static void
metrics_json(struct nw_master *m, struct nw_control_client *c)
{
	struct nw_generation *g;
	struct nw_counters sum;
	char tree[2048], verdict[600];
	unsigned inflight;
	int busy, idle;
	const char *sep = "";

	nw_metrics_sum(m, NULL, &sum);
	nw_metrics_load(m, NULL, &inflight, &busy, &idle);
	client_printf(c, ", \"totals\": {");
	counters_json(c, &sum);
	client_printf(c, ", \"inflight\": %u, \"busy\": %d, \"idle\": %d}",
	    inflight, busy, idle);
	client_printf(c, ", \"restarts\": {");
	for (int i = NW_RESTART_RECYCLED; i < NW_RESTART_CAUSES; i++)
		client_printf(c, "%s\"%s\": %llu", i > 1 ? ", " : "",
		    nw_restart_cause_name(i), m->metrics.restarts[i]);
	client_printf(c, "}, \"reloads\": {\"ok\": %llu, \"refused\": %llu, "
	    "\"rolled-back\": %llu, \"dependency-down\": %llu, "
	    "\"watch-rolled-back\": %llu}",
	    m->metrics.reloads[NW_RELOAD_OK],
	    m->metrics.reloads[NW_RELOAD_INVALID_CONFIG],
	    m->metrics.reloads[NW_RELOAD_ROLLED_BACK],
	    m->metrics.reloads[NW_RELOAD_DEPENDENCY],
	    m->metrics.reloads[NW_RELOAD_WATCH_ROLLED_BACK]);
	client_printf(c, ", \"rollbacks\": {\"boot\": %llu, \"watch\": %llu, "
	    "\"manual\": %llu}", m->metrics.rollbacks[NW_ROLLBACK_BOOT],
	    m->metrics.rollbacks[NW_ROLLBACK_WATCH],
	    m->metrics.rollbacks[NW_ROLLBACK_MANUAL]);
	json_string(verdict, sizeof verdict, m->canary.verdict);
	client_printf(c, ", \"watch\": {\"active\": %s, \"generation\": %u, "
	    "\"verdict\": %s", nw_canary_active(m) ? "true" : "false",
	    m->canary.gen ? m->canary.gen->id : 0, verdict);
	json_string(verdict, sizeof verdict, m->postlive.verdict);
	client_printf(c, ", \"after_switch\": {\"active\": %s, "
	    "\"generation\": %u, \"verdict\": %s}}",
	    nw_postlive_active(m) ? "true" : "false",
	    m->postlive.gen ? m->postlive.gen->id : 0, verdict);
	client_printf(c, ", \"generations\": [");
	TAILQ_FOREACH(g, &m->generations, entry) {
		json_string(tree, sizeof tree, g->tree);
		nw_metrics_sum(m, g, &sum);
		nw_metrics_load(m, g, &inflight, &busy, &idle);
		client_printf(c, "%s{\"id\": %u, \"role\": \"%s\", \"tree\": %s, ",
		    sep, g->id, g == m->current ? "current"
		    : g == m->reload.gen ? "starting" : "old", tree);
		counters_json(c, &sum);
		client_printf(c, ", \"inflight\": %u, \"busy\": %d, "
		    "\"idle\": %d}", inflight, busy, idle);
		sep = ", ";
	}
	client_printf(c, "]");
}

static void
status_json(struct nw_master *m, struct nw_control_client *c)
{
	double now = ev_now(m->loop);
	char tree[2048], reason[1200], reload_tree[2048], held[600];
	struct nw_worker *w;
	const char *sep = "";

	json_string(tree, sizeof tree, m->current->tree);
	json_string(reason, sizeof reason, m->last_reason);
	json_string(held, sizeof held, m->recycle_held);
	json_string(reload_tree, sizeof reload_tree,
	    m->reload.gen ? m->reload.gen->tree : "");
	client_printf(c,
	    "{\"master_pid\": %d, \"generation\": %u, \"tree\": %s, "
	    "\"target\": %d, \"live\": %d, \"reloading\": %s, "
	    "\"reload_generation\": %u, \"reload_tree\": %s, "
	    "\"last_reload\": {\"outcome\": \"%s\", \"reason\": %s, "
	    "\"at\": %.3f}, \"recycle_held\": %s, \"past_budget\": %d, "
	    "\"workers\": [",
	    (int)getpid(), m->current->id, tree, m->target,
	    nw_master_live_count(m, m->current),
	    m->reload.gen ? "true" : "false",
	    m->reload.gen ? m->reload.gen->id : 0, reload_tree,
	    outcome_words[m->last_outcome], reason,
	    m->last_reload_at > 0 ? m->last_reload_at - now + (double)time(NULL)
				  : 0., held, past_budget(m));
	TAILQ_FOREACH(w, &m->workers, entry) {
		long long rss = w->pid > 0 ? nw_proc_rss(w->pid) : -1;
		char probe[600] = "null", text[512];

		if (nw_worker_probe_text(w, text, sizeof text)[0] != '\0') {
			char quoted[560];

			json_string(quoted, sizeof quoted, text);
			snprintf(probe, sizeof probe, "{\"status\": %ld, "
			    "\"failures\": %d, \"text\": %s}",
			    w->probe_last.status, w->probe_failures, quoted);
		}
		client_printf(c,
		    "%s{\"id\": %u, \"pid\": %d, \"generation\": %u, "
		    "\"state\": \"%s\", \"age\": %.3f, \"requests\": %lu, "
		    "\"rss\": %lld, \"budget\": %lu, \"replaces\": %u, "
		    "\"boot_left\": %.3f, \"probe\": %s, "
		    "\"slot\": %u, \"inflight\": %u, \"websockets\": %u, "
		    "\"reports_counters\": %s, \"counters\": {",
		    sep, w->id, (int)w->pid, w->gen->id,
		    nw_worker_state_name(w->state),
		    w->pid > 0 ? now - w->spawned_at : 0., w->requests,
		    rss > 0 ? rss : 0, w->budget,
		    w->replaces ? w->replaces->id : 0,
		    nw_worker_is_booting(w) ? w->spawned_at +
			w->gen->config->boot_timeout - now : 0., probe,
		    w->slot, w->inflight, w->websockets,
		    w->reports_counters > 0 ? "true" : "false");
		counters_json(c, &w->counted);
		client_printf(c, "}}");
		sep = ", ";
	}
	client_printf(c, "]");
	metrics_json(m, c);
	client_printf(c, "}\n");
}

/*
 * `rollback`: a running reload is stopped (the current generation never
 * left); otherwise the previous good tree is reloaded. 1: answered later.
 */
static int
rollback_command(struct nw_master *m, struct nw_control_client *c, int wait)
{
	char why[512];

	if (m->reload.gen != NULL && m->stopping == NW_RUNNING) {
		unsigned id = m->reload.gen->id;

		m->metrics.rollback_manual = 2;
		nw_reload_abort(m, "stopped by narwhal rollback",
		    NW_RELOAD_ROLLED_BACK);
		client_printf(c, "result: ok generation %u stopped; generation "
		    "%u serves, tree %s\n", id, m->current->id,
		    m->current->tree);
		return 0;
	}
	if (wait) {
		c->waiting = 1;
		c->wait_until = m->reloads_finished + 1;
	}
	if (nw_history_rollback(m, "narwhal rollback", why, sizeof why) < 0) {
		c->waiting = 0;
		client_printf(c, "result: refused %s\n", why);
		return 0;
	}
	/* As for `reload wait`: c may already be answered and closed. */
	if (wait)
		return 1;
	client_printf(c, "ok: rollback requested\n");
	return 0;
}

static int
run_command(struct nw_master *m, struct nw_control_client *c)
{
	if (strcmp(c->line, "status") == 0) {
		status_text(m, c);
	} else if (strcmp(c->line, "status json") == 0) {
		status_json(m, c);
	} else if (strcmp(c->line, "rollback") == 0) {
		return rollback_command(m, c, 0);
	} else if (strcmp(c->line, "rollback wait") == 0) {
		return rollback_command(m, c, 1);
	} else if (strcmp(c->line, "reload") == 0) {
		nw_reload_request(m, "control socket");
		client_printf(c, "ok: reload requested\n");
	} else if (strcmp(c->line, "reload wait") == 0 ||
	    strcmp(c->line, "reload wait watching") == 0) {
		/* A running reload is not this one: wait for the next. */
		c->waiting = 1;
		c->until_watching = c->line[11] != '\0';
		c->wait_until = m->reloads_finished +
		    (m->reload.gen != NULL ? 2 : 1);
		nw_reload_request(m, "control socket");
		/* Answered when that reload ends; an invalid config ends it
		 * at once, and then c is already closed: do not touch it. */
		return 1;
	} else {
		client_printf(c, "error: unknown command '%.40s'\n", c->line);
	}
	return 0;
}

static void
on_client_readable(struct ev_loop *loop, ev_io *io, int revents)
{
	struct nw_control_client *c = container_of(io,
	    struct nw_control_client, io);
	struct nw_master *m = ev_userdata(loop);
	char *nl;
	ssize_t n;

	n = read(c->fd, c->line + c->len, sizeof c->line - 1 - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(m, c);
		return;
	}
	c->len += (size_t)n;
	c->line[c->len] = '\0';
	nl = strchr(c->line, '\n');
	if (nl == NULL && c->len < sizeof c->line - 1)
		return;
	if (nl != NULL)
		*nl = '\0';
	ev_io_stop(loop, io);
	ev_timer_stop(loop, &c->timeout);
	if (!run_command(m, c))
		client_close(m, c);
}

static void
on_client_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_control_client *c = container_of(t,
	    struct nw_control_client, timeout);

	client_close(ev_userdata(loop), c);
}

/* The oldest client that has not said what it wants yet, if any. */
static struct nw_control_client *
oldest_silent(struct nw_master *m)
{
	struct nw_control_client *c;

	TAILQ_FOREACH(c, &m->clients, entry)
		if (ev_is_active(&c->timeout))
			return c;
	return NULL;
}

static void
on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	struct nw_master *m = container_of(io, struct nw_master, control_io);
	struct nw_control_client *c;
	int fd;

	for (int i = 0; i < CLIENTS_MAX; i++) {
		if (m->nclients >= m->clients_max) {
			if ((c = oldest_silent(m)) == NULL) {
				/* All wait for a reload: client_close()
				 * resumes accepting. */
				ev_io_stop(loop, io);
				return;
			}
			client_close(m, c);
		}
		fd = accept4(m->control_fd, NULL, NULL,
		    SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* Still readable: without a pause, libev
				 * would call us again at once, forever. */
				nw_warn("control socket: accept: %s; pausing "
					"%gs", strerror(errno), ACCEPT_PAUSE);
				ev_io_stop(loop, io);
				ev_timer_set(&m->control_retry, ACCEPT_PAUSE,
				    0.);
				ev_timer_start(loop, &m->control_retry);
			}
			return;
		}
		c = nw_calloc(1, sizeof *c);
		c->fd = fd;
		TAILQ_INSERT_TAIL(&m->clients, c, entry);
		m->nclients++;
		ev_io_init(&c->io, on_client_readable, fd, EV_READ);
		ev_io_start(loop, &c->io);
		ev_timer_init(&c->timeout, on_client_timeout, CLIENT_TIMEOUT,
		    0.);
		ev_timer_start(loop, &c->timeout);
	}
}

static void
on_accept_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master, control_retry);

	accept_resume(m);
}

void
nw_control_reload_finished(struct nw_master *m)
{
	struct nw_control_client *c, *next;

	m->reloads_finished++;
	nw_metrics_reload_finished(m);
	for (c = TAILQ_FIRST(&m->clients); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (!c->waiting || c->wait_until > m->reloads_finished)
			continue;
		send_result(m, c);
		c->waiting = 0;
		client_close(m, c);
	}
}

/* The running reload's canary is live and watched: `--watching` is done. */
void
nw_control_watching(struct nw_master *m, const char *what)
{
	struct nw_control_client *c, *next;

	for (c = TAILQ_FIRST(&m->clients); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (!c->waiting || !c->until_watching ||
		    c->wait_until != m->reloads_finished + 1)
			continue;
		client_printf(c, "result: ok %s\n", what);
		client_close(m, c);
	}
}

void
nw_control_progress(struct nw_master *m, const char *fmt, ...)
{
	struct nw_control_client *c;
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	TAILQ_FOREACH(c, &m->clients, entry)
		if (c->waiting)
			client_printf(c, "progress: %s\n", line);
}

int
nw_control_open(struct nw_master *m)
{
	mode_t old = umask(0077);
	struct rlimit nofile;

	m->control_fd = nw_unix_listen(m->control_path, 16);
	umask(old);
	if (m->control_fd < 0) {
		nw_error("control socket %s: %s", m->control_path,
		    strerror(errno));
		return -1;
	}
	chmod(m->control_path, 0600);
	fcntl(m->control_fd, F_SETFL, O_NONBLOCK);
	m->clients_max = CLIENTS_MAX;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
	    nofile.rlim_cur / 4 < (rlim_t)m->clients_max)
		m->clients_max = nofile.rlim_cur / 4 > 0
		    ? (int)(nofile.rlim_cur / 4)
		    : 1;
	ev_io_init(&m->control_io, on_accept, m->control_fd, EV_READ);
	ev_io_start(m->loop, &m->control_io);
	ev_timer_init(&m->control_retry, on_accept_retry, 0., 0.);
	return 0;
}

void
nw_control_close(struct nw_master *m)
{
	struct nw_control_client *c;

	while ((c = TAILQ_FIRST(&m->clients)) != NULL) {
		if (c->waiting)
			client_printf(c, "result: stopped master is stopping\n");
		client_close(m, c);
	}
	if (m->control_fd >= 0) {
		ev_io_stop(m->loop, &m->control_io);
		ev_timer_stop(m->loop, &m->control_retry);
		close(m->control_fd);
		unlink(m->control_path);
		m->control_fd = -1;
	}
}
