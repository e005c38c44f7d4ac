/*
 * control.c: the master's control socket, the server side of `narwhal reload`
 * and `narwhal status`.
 *
 * A client sends one line (`reload`, `reload wait`, `status`, `status json`)
 * and reads lines back until the master closes. The socket lives in the
 * runtime directory, owner-only. This file answers questions and forwards
 * requests; it decides nothing about workers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

struct nw_control_client {
	int fd;
	ev_io io;
	char line[128];
	size_t len;
	int waiting;                  /* for a reload's outcome */
	unsigned long wait_until;     /* reloads_finished to reach */
	TAILQ_ENTRY(nw_control_client) entry;
};

static const char *const outcome_words[] = {
	[NW_RELOAD_NONE] = "none",
	[NW_RELOAD_OK] = "ok",
	[NW_RELOAD_INVALID_CONFIG] = "refused",
	[NW_RELOAD_ROLLED_BACK] = "rolled-back",
	[NW_RELOAD_DEPENDENCY] = "dependency-down",
};

static void
client_close(struct nw_master *m, struct nw_control_client *c)
{
	ev_io_stop(m->loop, &c->io);
	close(c->fd);
	TAILQ_REMOVE(&m->clients, c, entry);
	free(c);
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
	if (m->last_stderr == NULL)
		return;
	lines = nw_strdup(m->last_stderr);
	for (line = strtok_r(lines, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		client_printf(c, "stderr: %s\n", line);
	free(lines);
}

static void
status_text(struct nw_master *m, struct nw_control_client *c)
{
	double now = ev_now(m->loop);
	struct nw_worker *w;

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
	client_printf(c, "%6s %4s %-9s %8s %8s %10s %10s %8s\n", "WORKER",
	    "GEN", "STATE", "PID", "AGE", "REQUESTS", "RSS", "BUDGET");
	TAILQ_FOREACH(w, &m->workers, entry) {
		long long rss = w->pid > 0 ? nw_proc_rss(w->pid) : -1;

		client_printf(c, "%6u %4u %-9s %8d %7.0fs %10lu %9lldK %8lu\n",
		    w->id, w->gen->id, nw_worker_state_name(w->state),
		    (int)w->pid, w->pid > 0 ? now - w->spawned_at : 0.,
		    w->requests, rss > 0 ? rss / 1024 : 0, w->budget);
	}
}

static void
status_json(struct nw_master *m, struct nw_control_client *c)
{
	double now = ev_now(m->loop);
	char tree[2048], reason[1200], reload_tree[2048];
	struct nw_worker *w;
	const char *sep = "";

	json_string(tree, sizeof tree, m->current->tree);
	json_string(reason, sizeof reason, m->last_reason);
	json_string(reload_tree, sizeof reload_tree,
	    m->reload.gen ? m->reload.gen->tree : "");
	client_printf(c,
	    "{\"master_pid\": %d, \"generation\": %u, \"tree\": %s, "
	    "\"target\": %d, \"live\": %d, \"reloading\": %s, "
	    "\"reload_generation\": %u, \"reload_tree\": %s, "
	    "\"last_reload\": {\"outcome\": \"%s\", \"reason\": %s, "
	    "\"at\": %.3f}, \"workers\": [",
	    (int)getpid(), m->current->id, tree, m->target,
	    nw_master_live_count(m, m->current),
	    m->reload.gen ? "true" : "false",
	    m->reload.gen ? m->reload.gen->id : 0, reload_tree,
	    outcome_words[m->last_outcome], reason,
	    m->last_reload_at > 0 ? m->last_reload_at - now + (double)time(NULL)
				  : 0.);
	TAILQ_FOREACH(w, &m->workers, entry) {
		long long rss = w->pid > 0 ? nw_proc_rss(w->pid) : -1;

		client_printf(c,
		    "%s{\"id\": %u, \"pid\": %d, \"generation\": %u, "
		    "\"state\": \"%s\", \"age\": %.3f, \"requests\": %lu, "
		    "\"rss\": %lld, \"budget\": %lu, \"replaces\": %u}",
		    sep, w->id, (int)w->pid, w->gen->id,
		    nw_worker_state_name(w->state),
		    w->pid > 0 ? now - w->spawned_at : 0., w->requests,
		    rss > 0 ? rss : 0, w->budget,
		    w->replaces ? w->replaces->id : 0);
		sep = ", ";
	}
	client_printf(c, "]}\n");
}

static int
run_command(struct nw_master *m, struct nw_control_client *c)
{
	if (strcmp(c->line, "status") == 0) {
		status_text(m, c);
	} else if (strcmp(c->line, "status json") == 0) {
		status_json(m, c);
	} else if (strcmp(c->line, "reload") == 0) {
		nw_reload_request(m, "control socket");
		client_printf(c, "ok: reload requested\n");
	} else if (strcmp(c->line, "reload wait") == 0) {
		/* A running reload is not this one: wait for the next. */
		c->waiting = 1;
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
	if (!run_command(m, c))
		client_close(m, c);
}

static void
on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	struct nw_master *m = container_of(io, struct nw_master, control_io);
	struct nw_control_client *c;
	int fd = accept4(m->control_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	c = nw_calloc(1, sizeof *c);
	c->fd = fd;
	TAILQ_INSERT_TAIL(&m->clients, c, entry);
	ev_io_init(&c->io, on_client_readable, fd, EV_READ);
	ev_io_start(loop, &c->io);
}

void
nw_control_reload_finished(struct nw_master *m)
{
	struct nw_control_client *c, *next;

	m->reloads_finished++;
	for (c = TAILQ_FIRST(&m->clients); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (!c->waiting || c->wait_until > m->reloads_finished)
			continue;
		send_result(m, c);
		c->waiting = 0;
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

	m->control_fd = nw_unix_listen(m->control_path, 16);
	umask(old);
	if (m->control_fd < 0) {
		nw_error("control socket %s: %s", m->control_path,
		    strerror(errno));
		return -1;
	}
	chmod(m->control_path, 0600);
	fcntl(m->control_fd, F_SETFL, O_NONBLOCK);
	ev_io_init(&m->control_io, on_accept, m->control_fd, EV_READ);
	ev_io_start(m->loop, &m->control_io);
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
		close(m->control_fd);
		unlink(m->control_path);
		m->control_fd = -1;
	}
}
