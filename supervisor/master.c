/*
 * master.c: start-up, signals and shut-down of the master process.
 *
 * It sets up the one struct nw_master, binds the sockets, and runs the libev
 * loop. Signal callbacks only record a request; once per loop iteration the
 * requests are acted on in one place (handle_requests), then supervise.c
 * reconciles. It never talks to a worker directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

enum {
	REQ_RELOAD = 1 << 0,
	REQ_STOP_GRACEFUL = 1 << 1,
	REQ_STOP_QUICK = 1 << 2,
	REQ_MORE_WORKERS = 1 << 3,
	REQ_FEWER_WORKERS = 1 << 4,
	REQ_REOPEN_LOGS = 1 << 5,
	REQ_UPGRADE = 1 << 6,
};

/* Extra time past graceful_timeout before the master stops waiting. */
#define STOP_SLACK 5.0

static void
request(struct nw_master *m, unsigned bit)
{
	m->requests |= bit;
	nw_supervise_mark(m);
}

static void
on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
	struct nw_master *m = ev_userdata(loop);

	switch (s->signum) {
	case SIGHUP:
		request(m, REQ_RELOAD);
		break;
	case SIGTERM:
		request(m, REQ_STOP_GRACEFUL);
		break;
	case SIGINT:
	case SIGQUIT:
		request(m, REQ_STOP_QUICK);
		break;
	case SIGTTIN:
		m->more_workers++;
		request(m, REQ_MORE_WORKERS);
		break;
	case SIGTTOU:
		m->fewer_workers++;
		request(m, REQ_FEWER_WORKERS);
		break;
	case SIGUSR1:
		request(m, REQ_REOPEN_LOGS);
		break;
	case SIGUSR2:
		request(m, REQ_UPGRADE);
		break;
	}
}

static void
on_stop_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master, stop_deadline);
	struct nw_worker *w, *next;

	for (w = TAILQ_FIRST(&m->workers); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		nw_worker_event(m, w, NW_EV_KILL, "shutdown deadline");
	}
}

void
nw_master_shutdown(struct nw_master *m, enum nw_stop how)
{
	struct nw_worker *w, *next;
	double grace = m->current->config->graceful_timeout;

	if (m->stopping == NW_STOP_QUICK ||
	    (m->stopping == how && how == NW_STOP_GRACEFUL))
		return;
	if (m->stopping == NW_RUNNING)
		nw_sd_stopping(m);
	m->stopping = how;
	nw_info("shutting down (%s), %d workers",
	    how == NW_STOP_QUICK ? "quick" : "graceful",
	    nw_master_live_count(m, NULL));
	nw_control_close(m);
	for (w = TAILQ_FIRST(&m->workers); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		nw_worker_event(m, w,
		    how == NW_STOP_QUICK ? NW_EV_KILL : NW_EV_STOP,
		    "shutdown");
	}
	ev_timer_stop(m->loop, &m->stop_deadline);
	ev_timer_set(&m->stop_deadline,
	    how == NW_STOP_QUICK ? 1. : grace + STOP_SLACK, 0.);
	ev_timer_start(m->loop, &m->stop_deadline);
	nw_supervise_mark(m);
}

/*
 * Only to workers that said `booted`: before that, a worker may not have its
 * handlers yet, and USR1's default action would kill it. A worker still
 * booting opens its logs afresh anyway.
 */
static void
forward_signal(struct nw_master *m, int sig)
{
	struct nw_worker *w;

	TAILQ_FOREACH(w, &m->workers, entry)
		if (w->pid > 0 && w->state != NW_SPAWNED &&
		    w->state != NW_BACKOFF && w->state != NW_EXITED)
			kill(w->pid, sig);
}

/* The one place where recorded signals turn into decisions. */
static void
handle_requests(struct nw_master *m)
{
	unsigned req = m->requests;

	m->requests = 0;
	if (req & REQ_STOP_QUICK)
		nw_master_shutdown(m, NW_STOP_QUICK);
	else if (req & REQ_STOP_GRACEFUL)
		nw_master_shutdown(m, NW_STOP_GRACEFUL);
	if (m->stopping != NW_RUNNING)
		return;
	if (req & REQ_REOPEN_LOGS) {
		nw_log_reopen();
		forward_signal(m, SIGUSR1);
		nw_info("reopened logs");
	}
	if (req & (REQ_MORE_WORKERS | REQ_FEWER_WORKERS)) {
		int target = m->target + m->more_workers - m->fewer_workers;

		m->more_workers = m->fewer_workers = 0;
		if (target < 1)
			target = 1;
		if (target != m->target) {
			nw_info("workers: %d -> %d", m->target, target);
			nw_hook_nworkers_changed(m, target, m->target);
		}
		m->target = target;
	}
	/*
	 * gunicorn's binary upgrade (USR2, then QUIT to the pid it moved to
	 * <pidfile>.oldbin) starts a second master. Here one master reloads
	 * in place, which is what a deploy script sending it wants; no
	 * .oldbin is written, so its QUIT finds no old master to stop.
	 * Unhandled, USR2 would have killed the master.
	 */
	if (req & REQ_UPGRADE)
		nw_warn("SIGUSR2 (gunicorn's binary upgrade): reloading in "
			"place; no second master, no .oldbin pidfile");
	if (req & REQ_RELOAD)
		nw_reload_request(m, "SIGHUP");
	else if (req & REQ_UPGRADE)
		nw_reload_request(m, "SIGUSR2");
}

static void
on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
	struct nw_master *m = container_of(p, struct nw_master,
	    reconcile_prepare);

	if (m->requests)
		handle_requests(m);
	nw_supervise_reconcile(m);
}

static void
watch_signals(struct nw_master *m)
{
	struct {
		ev_signal *w;
		int sig;
	} sigs[] = {
		{ &m->sig_hup, SIGHUP },   { &m->sig_term, SIGTERM },
		{ &m->sig_int, SIGINT },   { &m->sig_quit, SIGQUIT },
		{ &m->sig_ttin, SIGTTIN }, { &m->sig_ttou, SIGTTOU },
		{ &m->sig_usr1, SIGUSR1 }, { &m->sig_usr2, SIGUSR2 },
	};

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
		ev_signal_init(sigs[i].w, on_signal, sigs[i].sig);
		ev_signal_start(m->loop, sigs[i].w);
	}
}

/* The shim's directory (install.c), for the master and --check-app. */
char *
nw_find_shim_dir(void)
{
	char *dir = nw_shim_dir();

	return dir != NULL ? dir : nw_strdup("/usr/lib/narwhal");
}

static int
write_pidfile(const char *path)
{
	char tmp[PATH_MAX + 16];
	FILE *f;
	int fd;

	/* In a shared directory, a name another user planted (a symlink to a
	 * file of ours) must not be written through. */
	snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0644);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Only our own pidfile: a successor may have written its own since. */
static void
remove_pidfile(const char *path)
{
	FILE *f = fopen(path, "r");
	int pid = 0;

	if (f == NULL)
		return;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	if (pid == (int)getpid())
		unlink(path);
}

static void
seed_random(void)
{
	unsigned seed;

	if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
		seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	srandom(seed);
}

/*
 * The runtime directory holds the control socket and the workers' private
 * sockets, the state directory the tree a cold start falls back to: another
 * user who can change either (say, by creating /tmp/narwhal-<uid> first)
 * could answer `narwhal reload` or choose the code we run. Refuse to start.
 */
static int
trust_dirs(struct nw_master *m, const struct nw_config *config)
{
	char err[768], *slash, *dir;

	if (nw_mkdir_p(m->runtime_dir, 0700) < 0) {
		nw_error("runtime dir %s: %s", m->runtime_dir, strerror(errno));
		return -1;
	}
	if (nw_path_trusted(m->runtime_dir, geteuid(), 0, err, sizeof err) <
	    0) {
		nw_error("runtime dir %s: %s", m->runtime_dir, err);
		return -1;
	}
	chmod(m->runtime_dir, 0700);
	/* Not being able to create it only costs the cold-start fallback. */
	if (nw_mkdir_p(m->state_dir, 0700) == 0 &&
	    nw_path_trusted(m->state_dir, geteuid(), 0, err, sizeof err) < 0) {
		nw_error("state dir %s: %s", m->state_dir, err);
		return -1;
	}
	if (config->control_socket == NULL)
		return 0;
	dir = nw_strdup(m->control_path);
	slash = strrchr(dir, '/');
	if (slash != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (nw_path_trusted(slash != NULL ? dir : ".", geteuid(), 1, err,
		sizeof err) < 0) {
		nw_error("control socket %s: %s", m->control_path, err);
		free(dir);
		return -1;
	}
	free(dir);
	return 0;
}

static int
setup(struct nw_master *m, struct nw_config *config)
{
	char err[512];

	m->runtime_dir = nw_config_runtime_dir(config);
	m->state_dir = nw_config_state_dir(config);
	m->control_path = nw_config_control_path(config);
	if (trust_dirs(m, config) < 0)
		return -1;
	nw_history_load(m);
	if (nw_probe_init(m, config, err, sizeof err) < 0) {
		nw_error("%s", err);
		return -1;
	}
	m->current = nw_generation_new(m, config, NULL, err, sizeof err);
	if (m->current == NULL) {
		nw_error("%s", err);
		return -1;
	}
	m->config = config;
	m->target = config->workers;
	nw_hook_call_wait(m, "on_starting");
	if (nw_listen_open(m, config) < 0)
		return -1;
	if (config->pidfile != NULL && write_pidfile(config->pidfile) < 0) {
		nw_error("pidfile %s: %s", config->pidfile, strerror(errno));
		return -1;
	}
	if (nw_control_open(m) < 0)
		return -1;
	if (nw_prometheus_open(m) < 0)
		return -1;
	/* UDP is best effort: a statsd that cannot be reached stops nothing. */
	if (nw_statsd_open(m) < 0)
		nw_warn("statsd_host %s: not sending statsd",
		    config->statsd_host);
	return 0;
}

static void
teardown(struct nw_master *m)
{
	struct nw_generation *g;

	nw_control_close(m);
	nw_prometheus_close(m);
	nw_statsd_close(m);
	nw_history_free(m);
	nw_postlive_free(m);
	nw_watch_close(m);
	nw_listen_close(m);
	nw_probe_cleanup(m);
	if (m->config != NULL && m->config->pidfile != NULL)
		remove_pidfile(m->config->pidfile);
	while ((g = TAILQ_FIRST(&m->generations)) != NULL) {
		TAILQ_REMOVE(&m->generations, g, entry);
		nw_config_free(g->config);
		free(g->tree);
		free(g->link_target);
		free(g->worktree);
		free(g->commit);
		free(g);
	}
	free(m->last_stderr);
	free(m->runtime_dir);
	free(m->state_dir);
	free(m->control_path);
	free(m->shim_dir);
}

int
nw_master_run(int argc, char **argv, struct nw_config *config)
{
	struct nw_master master, *m = &master;
	int status;

	memset(m, 0, sizeof *m);
	m->argc = argc;
	m->argv = argv;
	m->control_fd = -1;
	m->prom.fd = -1;
	m->statsd.fd = -1;
	TAILQ_INIT(&m->prom.clients);
	m->watch.fd = -1;
	TAILQ_INIT(&m->generations);
	TAILQ_INIT(&m->workers);
	TAILQ_INIT(&m->clients);
	nw_log_init(config->loglevel);
	if (nw_log_open(config->errorlog) < 0) {
		nw_error("errorlog %s: %s", config->errorlog, strerror(errno));
		nw_config_free(config);
		return 1;
	}
	m->loop = ev_default_loop(EVFLAG_AUTO);
	ev_set_userdata(m->loop, m);
	seed_random();
	m->shim_dir = nw_find_shim_dir();
	nw_info("narwhal %s starting, master pid %d, worker shim %s",
	    NW_VERSION, (int)getpid(), m->shim_dir);
	nw_info("python: %s (%s)", config->python,
	    config->python_why ? config->python_why : "configured");
	if (config->certfile != NULL)
		nw_info("tls: every bind speaks TLS, certificate %s%s",
		    config->certfile, config->cert_reqs == 2 ? ", client "
		    "certificates required" : config->cert_reqs == 1 ?
		    ", client certificates verified when sent" : "");
	for (size_t i = 0; i < config->nnotes; i++)
		nw_warn("%s", config->notes[i]);
	if (setup(m, config) < 0) {
		if (m->current == NULL)
			nw_config_free(config);
		teardown(m);
		return 1;
	}
	watch_signals(m);
	ev_timer_init(&m->stop_deadline, on_stop_deadline, 0., 0.);
	ev_prepare_init(&m->reconcile_prepare, on_prepare);
	ev_prepare_start(m->loop, &m->reconcile_prepare);
	nw_supervise_init(m);
	nw_reload_init(m);
	nw_canary_init(m);
	nw_postlive_init(m);
	nw_coldstart_init(m);
	nw_sd_init(m);
	nw_watch_init(m);

	ev_run(m->loop, 0);

	status = m->exit_status;
	nw_hook_call_wait(m, "on_exit");
	nw_info("master exiting with status %d", status);
	teardown(m);
	return status;
}
