/*
 * worker.c: the lifecycle of one worker, as one transition function.
 *
 * nw_worker_event() is the only place a worker's state changes, and every
 * change is exactly one log line `worker ID pid PID gen G: STATE`. This file
 * also reads what a worker says (control messages, stderr). It decides nothing
 * about how many workers there should be: that is supervise.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

static const char *const state_names[] = {
	[NW_SPAWNED] = "spawned",   [NW_BOOTED] = "booted",
	[NW_PROBING] = "probing",   [NW_LIVE] = "live",
	[NW_RETIRING] = "retiring", [NW_STOPPING] = "stopping",
	[NW_EXITED] = "exited",     [NW_BACKOFF] = "backoff",
};

static const char *const event_names[] = {
	[NW_EV_SPAWNED] = "spawned",
	[NW_EV_SPAWN_FAILED] = "spawn failed",
	[NW_EV_BOOTED] = "booted",
	[NW_EV_PROBE_OK] = "probe ok",
	[NW_EV_PROBE_FAILED] = "probe failed",
	[NW_EV_RETIRE] = "retire",
	[NW_EV_STOP] = "stop",
	[NW_EV_KILL] = "kill",
	[NW_EV_EXITED] = "exited",
	[NW_EV_BOOT_TIMEOUT] = "boot timeout",
	[NW_EV_HANG] = "hang",
	[NW_EV_TIMER] = "timer",
};

/* After SIGABRT, how long faulthandler gets to dump the stack. */
#define HANG_KILL_GRACE 3.0

const char *
nw_worker_state_name(enum nw_worker_state state)
{
	return state_names[state];
}

int
nw_worker_counts_as_capacity(const struct nw_worker *w)
{
	return w->state == NW_LIVE || w->state == NW_RETIRING;
}

int
nw_worker_is_booting(const struct nw_worker *w)
{
	return w->state == NW_SPAWNED || w->state == NW_BOOTED ||
	    w->state == NW_PROBING;
}

#define is_booting nw_worker_is_booting

/* The one log line of a state change. */
static void
log_state(struct nw_master *m, struct nw_worker *w, enum nw_loglevel level,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
log_state(struct nw_master *m, struct nw_worker *w, enum nw_loglevel level,
    const char *fmt, ...)
{
	char detail[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	nw_log(level, "worker %u pid %d gen %u: %s", w->id, (int)w->pid,
	    w->gen->id, detail);
}

static void
set_state_at(struct nw_master *m, struct nw_worker *w,
    enum nw_worker_state state, enum nw_loglevel level, const char *why)
{
	w->state = state;
	if (why != NULL && *why != '\0')
		log_state(m, w, level, "%s (%s)", state_names[state], why);
	else
		log_state(m, w, level, "%s", state_names[state]);
	nw_supervise_mark(m);
}

static void
set_state(struct nw_master *m, struct nw_worker *w,
    enum nw_worker_state state, const char *why)
{
	set_state_at(m, w, state, NW_LOG_INFO, why);
}

void
nw_worker_send(struct nw_worker *w, const char *msg)
{
	if (w->control_fd < 0)
		return;
	/* A worker that cannot take a 10-byte datagram is gone or dying. */
	if (send(w->control_fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) <
	    0)
		nw_debug("worker %u: cannot send '%s': %s", w->id, msg,
		    strerror(errno));
}

static void
signal_worker(struct nw_worker *w, int sig)
{
	if (w->pid > 0 && kill(w->pid, sig) < 0 && errno != ESRCH)
		nw_warn("worker %u pid %d: kill(%d): %s", w->id, (int)w->pid,
		    sig, strerror(errno));
}

static void
timer_set(struct nw_master *m, struct nw_worker *w, double after)
{
	ev_timer_stop(m->loop, &w->timer);
	ev_timer_set(&w->timer, after, 0.);
	ev_timer_start(m->loop, &w->timer);
}

/* The replacement relieving a retiring worker is supervise.c's business:
 * it sees this worker live on its next pass. */
static void
go_live(struct nw_master *m, struct nw_worker *w, const char *why)
{
	double timeout = w->gen->config->timeout;

	ev_timer_stop(m->loop, &w->timer);
	nw_probe_stop(m, w);
	nw_spawn_raise_priority(m, w);
	nw_worker_send(w, "live");
	w->live_at = ev_now(m->loop);
	ev_timer_stop(m->loop, &w->watchdog);
	if (timeout > 0) { /* timeout = 0: no heartbeat deadline */
		ev_timer_set(&w->watchdog, timeout, timeout);
		ev_timer_start(m->loop, &w->watchdog);
	}
	set_state_at(m, w, NW_LIVE, why ? NW_LOG_WARNING : NW_LOG_INFO, why);
}

static void
begin_stop(struct nw_master *m, struct nw_worker *w, int sig, double grace,
    const char *why)
{
	ev_timer_stop(m->loop, &w->watchdog);
	nw_probe_stop(m, w);
	w->was_stopped = 1;
	signal_worker(w, sig);
	timer_set(m, w, grace);
	set_state(m, w, NW_STOPPING, why);
}

/* A failure, not a decision: the log says so at warning level. */
static void
fail_boot(struct nw_master *m, struct nw_worker *w, int sig,
    const char *why)
{
	ev_timer_stop(m->loop, &w->watchdog);
	nw_probe_stop(m, w);
	signal_worker(w, sig);
	timer_set(m, w, HANG_KILL_GRACE);
	w->was_stopped = 0;
	set_state_at(m, w, NW_STOPPING, NW_LOG_WARNING, why);
}

static void
describe_exit(const struct nw_worker *w, char *buf, size_t len)
{
	if (w->spawn_failed)
		snprintf(buf, len, "exited (%.120s)", w->boot_failure);
	else if (WIFSIGNALED(w->exit_status))
		snprintf(buf, len, "exited on signal %d",
		    WTERMSIG(w->exit_status));
	else if (WEXITSTATUS(w->exit_status) == 126 && w->booted_at == 0)
		snprintf(buf, len, "exited with status 126 (cannot switch to "
		    "user %s)", w->gen->config->user ? w->gen->config->user
		    : "(unchanged)");
	else if (WEXITSTATUS(w->exit_status) == 127 && w->booted_at == 0)
		snprintf(buf, len, "exited with status 127 (cannot execute "
		    "%s)", w->gen->config->python);
	else
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(w->exit_status));
}

static void
drain_stderr(struct nw_master *m, struct nw_worker *w);

/*
 * A worker that had taken traffic is gone. The kernel wakes one idle
 * worker per new connection; if it was this one, woken just before it
 * died, the connection waits in the shared queue and no other worker is
 * woken for it until the next connection comes (on a quiet site, long):
 * the live workers are told to look.
 */
static void
nudge_accepting(struct nw_master *m, const struct nw_worker *gone)
{
	struct nw_worker *w;

	TAILQ_FOREACH(w, &m->workers, entry)
		if (w != gone && w->state == NW_LIVE)
			nw_worker_send(w, "accept");
}

/* Records the exit; what follows (respawn, failure, rollback) is decided by
 * the reconcile step, which answers with nw_worker_settle(). */
static void
on_exit_event(struct nw_master *m, struct nw_worker *w)
{
	drain_stderr(m, w);
	ev_timer_stop(m->loop, &w->timer);
	ev_timer_stop(m->loop, &w->watchdog);
	nw_probe_stop(m, w);
	nw_metrics_worker_exited(m, w);
	nw_spawn_close_fds(m, w);
	nw_hook_worker_gone(m, w);
	if (!w->was_stopped && w->live_at == 0 &&
	    w->boot_failure[0] == '\0') {
		char how[160];

		describe_exit(w, how, sizeof how);
		snprintf(w->boot_failure, sizeof w->boot_failure,
		    "%s while %s", how, state_names[w->state]);
	}
	w->state = NW_EXITED;
	if (w->live_at != 0)
		nudge_accepting(m, w);
	nw_supervise_mark(m);
}

void
nw_worker_settle(struct nw_master *m, struct nw_worker *w, double respawn)
{
	char how[160];

	if (w->state != NW_EXITED)
		return;
	describe_exit(w, how, sizeof how);
	if (respawn < 0) {
		log_state(m, w, w->was_stopped ? NW_LOG_INFO : NW_LOG_WARNING,
		    "%s", how);
		nw_worker_free(m, w);
		return;
	}
	log_state(m, w, NW_LOG_WARNING, "%s, respawn in %gs", how, respawn);
	w->pid = 0;
	w->state = NW_BACKOFF;
	w->was_stopped = 0;
	w->spawn_failed = 0;
	w->hung = 0;
	w->live_at = 0;
	w->booted_at = 0;
	w->requests = 0;
	w->boot_failure[0] = '\0';
	w->probe_failures = 0;
	w->probe_gave_up = 0;
	w->check = NW_CHECK_NONE;
	timer_set(m, w, respawn);
	nw_supervise_mark(m);
}

static void
respawn(struct nw_master *m, struct nw_worker *w)
{
	if (nw_spawn(m, w) < 0)
		nw_worker_event(m, w, NW_EV_SPAWN_FAILED, NULL);
	else
		nw_worker_event(m, w, NW_EV_SPAWNED, NULL);
}

static void
unexpected(struct nw_worker *w, enum nw_worker_event ev)
{
	nw_debug("worker %u pid %d gen %u: ignored '%s' while %s", w->id,
	    (int)w->pid, w->gen->id, event_names[ev], state_names[w->state]);
}

const char *
nw_worker_probe_text(const struct nw_worker *w, char *buf, size_t len)
{
	const struct nw_probe_result *r = &w->probe_last;
	const char *path = r->path;

	buf[0] = '\0';
	if (r->at == 0)
		return buf;
	/* A 400 to every probe is most often the app refusing the Host
	 * header (Django's ALLOWED_HOSTS): say which one, and the fix. */
	if (r->status == 400)
		snprintf(buf, len, "GET %s answered 400 to Host: %s (if the app "
		    "checks Host, set ready_host)%s%s", path, r->host,
		    r->body[0] ? ": " : "", r->body);
	else if (r->status > 0)
		snprintf(buf, len, "GET %s answered %ld%s%s", path, r->status,
		    r->body[0] ? ": " : "", r->body);
	else
		snprintf(buf, len, "GET %s: %s", path,
		    r->error[0] ? r->error : "no answer");
	return buf;
}

/*
 * The boot deadline. A worker still importing gets SIGABRT, so that
 * faulthandler shows where the import hangs; one that already said `booted`
 * sits in narwhal's own serve loop, whose stack would say nothing about the
 * app: SIGKILL, and the report carries the probe's last answer instead.
 */
static void
boot_timeout(struct nw_master *m, struct nw_worker *w)
{
	const struct nw_config *c = w->gen->config;
	char probe[384], reason[512];

	nw_worker_probe_text(w, probe, sizeof probe);
	snprintf(w->boot_failure, sizeof w->boot_failure,
	    "not live within boot_timeout %gs (%s%s%.300s)", c->boot_timeout,
	    state_names[w->state], probe[0] ? ": " : "", probe);
	if (w->state == NW_SPAWNED) {
		snprintf(reason, sizeof reason, "%s, SIGABRT", w->boot_failure);
		fail_boot(m, w, SIGABRT, reason);
	} else {
		snprintf(reason, sizeof reason, "%s, SIGKILL", w->boot_failure);
		fail_boot(m, w, SIGKILL, reason);
	}
}

void
nw_worker_event(struct nw_master *m, struct nw_worker *w,
    enum nw_worker_event ev, const char *why)
{
	const struct nw_config *c = w->gen->config;
	char reason[512];

	switch (ev) {
	case NW_EV_SPAWNED:
		if (w->state != NW_BACKOFF)
			break;
		w->spawned_at = ev_now(m->loop);
		timer_set(m, w, c->boot_timeout);
		set_state(m, w, NW_SPAWNED, why);
		return;
	case NW_EV_SPAWN_FAILED:
		if (w->state != NW_BACKOFF)
			break;
		/* No process: an exit at once, settled like any other. */
		ev_timer_stop(m->loop, &w->timer);
		w->spawned_at = ev_now(m->loop);
		w->spawn_failed = 1;
		w->exit_status = 0;
		w->was_stopped = 0;
		if (w->boot_failure[0] == '\0')
			snprintf(w->boot_failure, sizeof w->boot_failure,
			    "cannot spawn");
		w->state = NW_EXITED;
		nw_supervise_mark(m);
		return;
	case NW_EV_BOOTED:
		if (w->state != NW_SPAWNED)
			break;
		w->booted_at = ev_now(m->loop);
		set_state(m, w, NW_BOOTED, why);
		if (nw_probe_path(c) != NULL) {
			set_state(m, w, NW_PROBING, nw_probe_path(c));
			nw_probe_start(m, w);
		} else {
			go_live(m, w, NULL);
		}
		return;
	case NW_EV_PROBE_OK:
		if (w->state != NW_PROBING)
			break;
		go_live(m, w, why);
		return;
	case NW_EV_PROBE_FAILED:
		if (w->state != NW_PROBING)
			break;
		nw_worker_probe_text(w, reason, sizeof reason);
		if (c->ready_path == NULL)
			snprintf(w->boot_failure, sizeof w->boot_failure,
			    "failed the warm-up request: %.320s", reason);
		else
			snprintf(w->boot_failure, sizeof w->boot_failure,
			    "failed the probe %d times: %.320s",
			    w->probe_failures, reason);
		/* Booted: nothing of the app's to dump, no traffic to drain. */
		fail_boot(m, w, SIGKILL, w->boot_failure);
		return;
	case NW_EV_RETIRE:
		if (w->state != NW_LIVE)
			break;
		set_state(m, w, NW_RETIRING, why);
		return;
	case NW_EV_STOP:
		if (w->state == NW_BACKOFF) {
			w->state = NW_EXITED;
			log_state(m, w, NW_LOG_INFO, "removed (%s)",
			    why ? why : "not needed");
			nw_supervise_mark(m);
			nw_worker_free(m, w);
			return;
		}
		if (w->state == NW_STOPPING || w->state == NW_EXITED)
			break;
		if (is_booting(w)) {
			/* Nothing to drain: it never took public traffic. */
			begin_stop(m, w, SIGKILL, c->graceful_timeout, why);
			return;
		}
		/*
		 * The service goes on (a reload, a recycle, fewer workers):
		 * the worker closes its WebSockets with 1012, not 1001.
		 */
		if (m->stopping == NW_RUNNING)
			nw_worker_send(w, "restart");
		begin_stop(m, w, SIGTERM, c->graceful_timeout, why);
		return;
	case NW_EV_KILL:
		if (w->state == NW_BACKOFF) {
			nw_worker_event(m, w, NW_EV_STOP, why);
			return;
		}
		if (w->state == NW_EXITED)
			break;
		if (w->state == NW_STOPPING) {
			signal_worker(w, SIGKILL);
			return;
		}
		begin_stop(m, w, SIGKILL, c->graceful_timeout, why);
		return;
	case NW_EV_BOOT_TIMEOUT:
		if (!is_booting(w))
			break;
		boot_timeout(m, w);
		return;
	case NW_EV_HANG:
		if (!nw_worker_counts_as_capacity(w))
			break;
		w->hung = 1;
		snprintf(reason, sizeof reason,
		    "no heartbeat for %gs, SIGABRT", c->timeout);
		begin_stop(m, w, SIGABRT, HANG_KILL_GRACE, reason);
		w->was_stopped = 0;
		return;
	case NW_EV_TIMER:
		if (w->state == NW_BACKOFF) {
			respawn(m, w);
			return;
		}
		if (w->state == NW_STOPPING) {
			log_state(m, w, NW_LOG_WARNING,
			    "stopping (still running, SIGKILL)");
			signal_worker(w, SIGKILL);
			return;
		}
		if (is_booting(w)) {
			nw_worker_event(m, w, NW_EV_BOOT_TIMEOUT, NULL);
			return;
		}
		break;
	case NW_EV_EXITED:
		if (w->state == NW_EXITED || w->state == NW_BACKOFF)
			break;
		on_exit_event(m, w);
		return;
	}
	unexpected(w, ev);
}

/* ---- what the worker says ---- */

static void
on_control_message(struct nw_master *m, struct nw_worker *w, char *msg)
{
	if (strcmp(msg, "booted") == 0) {
		nw_worker_event(m, w, NW_EV_BOOTED, NULL);
	} else if (strncmp(msg, "hb ", 3) == 0) {
		nw_metrics_heartbeat(m, w, msg + 3);
		if (nw_worker_counts_as_capacity(w) && !w->hung &&
		    w->gen->config->timeout > 0)
			ev_timer_again(m->loop, &w->watchdog);
	} else if (strcmp(msg, "retire") == 0) {
		char why[64];

		snprintf(why, sizeof why, "max_requests %lu reached",
		    w->budget);
		w->retire_cause = NW_RESTART_RECYCLED;
		nw_worker_event(m, w, NW_EV_RETIRE, why);
	} else {
		nw_warn("worker %u pid %d: unknown control message '%.40s'",
		    w->id, (int)w->pid, msg);
	}
}

/* Everything the worker has sent so far. */
static void
read_control(struct nw_master *m, struct nw_worker *w)
{
	ev_io *io = &w->control_io;
	char msg[512]; /* a heartbeat with every counter */
	ssize_t n;

	for (;;) {
		n = recv(w->control_fd, msg, sizeof msg - 1, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			/* The worker is going; ev_child will tell how. */
			ev_io_stop(m->loop, io);
			return;
		}
		while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
			n--;
		msg[n] = '\0';
		on_control_message(m, w, msg);
		/* The message may have moved the worker out of the table. */
		if (w->control_fd < 0 || !ev_is_active(io))
			return;
	}
}

/*
 * The last NW_STDERR_KEEP lines are what a failure report shows. A fatal
 * error's dump (faulthandler's, on a crash or the watchdog's SIGABRT) lists
 * every thread, and a threaded worker's fills the lines on its own: the
 * app's last words before it and the error go, and the stacks of threads
 * that only waited stay. So in a dump the other threads' stacks ("Thread
 * 0x...", and the list of extension modules) are spare: a new line pushes
 * out the oldest spare line before any other. The log has every line.
 */
static int
stderr_line_spare(struct nw_worker *w, const char *line, size_t len)
{
#define STARTS(s) (len >= sizeof(s) - 1 && memcmp(line, s, sizeof(s) - 1) == 0)
	if (STARTS("Fatal Python error: ")) {
		w->stderr_dump = 1;
		return 0;
	}
	if (w->stderr_dump == 0)
		return 0;
	if (STARTS("Current thread 0x") || STARTS("Stack (most recent"))
		w->stderr_dump = 1;
	else if (STARTS("Thread 0x"))
		w->stderr_dump = 2;
	else if (STARTS("Extension modules: "))
		return 1;
	return w->stderr_dump == 2;
#undef STARTS
}

static void
on_control_readable(struct ev_loop *loop, ev_io *io, int revents)
{
	read_control(ev_userdata(loop),
	    container_of(io, struct nw_worker, control_io));
}

static void
keep_stderr_line(struct nw_worker *w, const char *line, size_t len)
{
	int spare = stderr_line_spare(w, line, len);
	char *copy = malloc(len + 1);
	unsigned out = 0;

	if (copy == NULL)
		return;
	memcpy(copy, line, len);
	copy[len] = '\0';
	if (w->stderr_kept == NW_STDERR_KEEP) {
		/* the oldest spare line, or else the oldest */
		for (unsigned i = 0; i < NW_STDERR_KEEP; i++)
			if (w->stderr_spare[i]) {
				out = i;
				break;
			}
		free(w->stderr_last[out]);
		memmove(&w->stderr_last[out], &w->stderr_last[out + 1],
		    (NW_STDERR_KEEP - out - 1) * sizeof w->stderr_last[0]);
		memmove(&w->stderr_spare[out], &w->stderr_spare[out + 1],
		    (NW_STDERR_KEEP - out - 1) * sizeof w->stderr_spare[0]);
		w->stderr_kept--;
	}
	w->stderr_last[w->stderr_kept] = copy;
	w->stderr_spare[w->stderr_kept] = (unsigned char)spare;
	w->stderr_kept++;
}

static void
relay_stderr_line(struct nw_master *m, struct nw_worker *w, const char *line,
    size_t len)
{
	nw_log(NW_LOG_WARNING, "worker %u pid %d gen %u stderr: %.*s", w->id,
	    (int)w->pid, w->gen->id, (int)len, line);
	keep_stderr_line(w, line, len);
}

/* Splits what arrived into lines; a line longer than the buffer is cut. */
static void
take_stderr(struct nw_master *m, struct nw_worker *w, const char *buf,
    size_t len)
{
	size_t cap = sizeof w->stderr_partial;

	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n' || w->stderr_partial_len == cap) {
			relay_stderr_line(m, w, w->stderr_partial,
			    w->stderr_partial_len);
			w->stderr_partial_len = 0;
			if (buf[i] == '\n')
				continue;
		}
		w->stderr_partial[w->stderr_partial_len++] = buf[i];
	}
}

static int
read_stderr(struct nw_master *m, struct nw_worker *w)
{
	char buf[4096];
	ssize_t n;

	for (;;) {
		n = read(w->stderr_fd, buf, sizeof buf);
		if (n > 0) {
			take_stderr(m, w, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (w->stderr_partial_len > 0) {
			relay_stderr_line(m, w, w->stderr_partial,
			    w->stderr_partial_len);
			w->stderr_partial_len = 0;
		}
		return -1; /* EOF or error: the pipe is done */
	}
}

static void
drain_stderr(struct nw_master *m, struct nw_worker *w)
{
	if (w->stderr_fd >= 0 && read_stderr(m, w) < 0) {
		ev_io_stop(m->loop, &w->stderr_io);
		close(w->stderr_fd);
		w->stderr_fd = -1;
	}
}

static void
on_stderr_readable(struct ev_loop *loop, ev_io *io, int revents)
{
	struct nw_worker *w = container_of(io, struct nw_worker, stderr_io);

	drain_stderr(ev_userdata(loop), w);
}

const char *
nw_worker_last_stderr(struct nw_worker *w, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < w->stderr_kept; i++) {
		const char *line = w->stderr_last[i];
		int n;

		n = snprintf(buf + used, len - used, "%s\n", line);
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	return buf;
}

/* ---- timers and the child watcher ---- */

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_worker *w = container_of(t, struct nw_worker, timer);

	nw_worker_event(ev_userdata(loop), w, NW_EV_TIMER, NULL);
}

static void
on_watchdog(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_worker *w = container_of(t, struct nw_worker, watchdog);
	struct nw_master *m = ev_userdata(loop);

	ev_timer_stop(loop, t);
	/*
	 * The master itself may have been busy past the deadline (a
	 * gunicorn.conf.py or a git snapshot at reload) while the heartbeats
	 * waited in the socket, and libev runs expired timers before the I/O
	 * of the same pass: read them first. A heartbeat re-arms this timer.
	 */
	if (w->control_fd >= 0 && ev_is_active(&w->control_io)) {
		read_control(m, w);
		if (ev_is_active(t))
			return;
	}
	nw_worker_event(m, w, NW_EV_HANG, NULL);
}

static void
on_child(struct ev_loop *loop, ev_child *c, int revents)
{
	struct nw_worker *w = container_of(c, struct nw_worker, child);

	ev_child_stop(loop, c);
	w->exit_status = c->rstatus;
	nw_worker_event(ev_userdata(loop), w, NW_EV_EXITED, NULL);
}

/* ---- the table ---- */

struct nw_worker *
nw_worker_new(struct nw_master *m, struct nw_generation *gen,
    struct nw_worker *replaces)
{
	struct nw_worker *w = nw_calloc(1, sizeof *w);

	w->id = ++m->next_worker_id;
	w->state = NW_BACKOFF; /* no process yet */
	w->gen = gen;
	w->slot = nw_metrics_slot(m, gen, replaces);
	nw_generation_hold(gen);
	w->control_fd = -1;
	w->stderr_fd = -1;
	if (replaces != NULL) {
		w->replaces = replaces;
		replaces->replaced_by = w;
	}
	ev_io_init(&w->control_io, on_control_readable, -1, EV_READ);
	ev_io_init(&w->stderr_io, on_stderr_readable, -1, EV_READ);
	ev_timer_init(&w->timer, on_timer, 0., 0.);
	ev_timer_init(&w->watchdog, on_watchdog, 0., 0.);
	ev_child_init(&w->child, on_child, 0, 0);
	TAILQ_INSERT_TAIL(&m->workers, w, entry);
	return w;
}

void
nw_worker_free(struct nw_master *m, struct nw_worker *w)
{
	ev_timer_stop(m->loop, &w->timer);
	ev_timer_stop(m->loop, &w->watchdog);
	ev_child_stop(m->loop, &w->child);
	nw_probe_stop(m, w);
	nw_spawn_close_fds(m, w);
	if (w->stderr_fd >= 0) {
		ev_io_stop(m->loop, &w->stderr_io);
		close(w->stderr_fd);
	}
	if (w->replaces != NULL)
		w->replaces->replaced_by = NULL;
	if (w->replaced_by != NULL)
		w->replaced_by->replaces = NULL;
	for (unsigned i = 0; i < w->stderr_kept; i++)
		free(w->stderr_last[i]);
	TAILQ_REMOVE(&m->workers, w, entry);
	nw_generation_release(m, w->gen);
	free(w);
}
