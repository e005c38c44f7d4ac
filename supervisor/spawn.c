/*
 * spawn.c: fork+exec of one worker process, with its fds and environment.
 *
 * Everything the child needs (argv, envp, fd numbers, ids) is built before
 * fork; between fork and exec the child only moves fds, resets signals, drops
 * privileges and calls execve. The layout it sets up is the contract in
 * worker-shim/README.md. It decides nothing about when to spawn.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

extern char **environ;

#define MAX_GROUPS 64

/* fd numbers inside the worker (see worker-shim/README.md). */
enum { FD_STDERR = 2, FD_CONTROL = 3, FD_PRIVATE = 4, FD_FIRST_LISTENER = 5 };

struct child_plan {
	char **argv;
	char **envp;
	size_t nenv;
	size_t envcap;  /* slots in envp, the closing NULL's included */
	int nfds;
	int from[64];   /* our fds ... */
	int to[64];     /* ... and where the worker finds them */
	int devnull;
	uid_t uid;
	gid_t gid;
	gid_t groups[MAX_GROUPS];
	int ngroups;
	int drop_privileges;
	int umask;
	enum nw_boot_priority priority; /* NW_BOOT_NORMAL: leave it */
	char home[256];  /* the user's, when switching to one */
	char name[64];
};

static void
env_add(struct child_plan *p, const char *name, const char *value)
{
	size_t len = strlen(name) + strlen(value) + 2;
	char *entry = malloc(len);

	if (entry == NULL)
		return;
	snprintf(entry, len, "%s=%s", name, value);
	/* The list grows with every setting a worker gets: never a fixed
	 * number of slots (a 41st variable once overran them). */
	if (p->nenv + 2 > p->envcap) {
		size_t cap = p->envcap * 2 + 16;
		char **grown = realloc(p->envp, cap * sizeof *grown);

		if (grown == NULL) {
			free(entry);
			return;
		}
		memset(grown + p->envcap, 0,
		    (cap - p->envcap) * sizeof *grown);
		p->envp = grown;
		p->envcap = cap;
	}
	p->envp[p->nenv++] = entry;
}

static void
env_addf(struct child_plan *p, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
env_addf(struct child_plan *p, const char *name, const char *fmt, ...)
{
	char value[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(value, sizeof value, fmt, ap);
	va_end(ap);
	env_add(p, name, value);
}

/* Replaces NAME=... in place, or adds it (the array has room). */
static void
env_set(struct child_plan *p, const char *name, const char *value)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < p->nenv; i++)
		if (strncmp(p->envp[i], name, len) == 0 &&
		    p->envp[i][len] == '=') {
			free(p->envp[i]);
			p->envp[i] = p->envp[--p->nenv];
			break;
		}
	env_add(p, name, value);
	p->envp[p->nenv] = NULL;
}

/* Variables of ours, or of systemd's meant for the master alone. */
static int
env_is_private(const char *entry)
{
	static const char *const prefixes[] = {
		"NARWHAL_", "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=",
		"NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=",
		"PYTHONPATH=",
	};

	for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
		if (strncmp(entry, prefixes[i], strlen(prefixes[i])) == 0)
			return 1;
	return 0;
}

/* The shim in site-packages, and the interpreter of that environment. */
static int
shim_is_own(const char *shim_dir, const char *python)
{
	char *own;
	int same;

	if (!nw_shim_in_site_packages(shim_dir))
		return 0;
	own = nw_installed_python();
	same = own != NULL && strcmp(own, python) == 0;
	free(own);
	return same;
}

static const char *
config_env(const struct nw_config *c, const char *name)
{
	for (size_t i = 0; i < c->nenv; i++)
		if (strcmp(c->env[i].name, name) == 0)
			return c->env[i].value;
	return NULL;
}

static const char *const interface_names[] = {
	[NW_INTERFACE_AUTO] = "auto",
	[NW_INTERFACE_WSGI] = "wsgi",
	[NW_INTERFACE_ASGI] = "asgi",
};

static const char *const worker_kind_names[] = {
	[NW_WORKER_AUTO] = "auto",
	[NW_WORKER_SYNC] = "sync",
	[NW_WORKER_GTHREAD] = "gthread",
	[NW_WORKER_GEVENT] = "gevent",
	[NW_WORKER_EVENTLET] = "eventlet",
	[NW_WORKER_ASGI] = "asgi",
};

static const char *const loglevel_names[] = {
	"debug", "info", "warning", "error", "critical",
};

static void
build_env(struct nw_master *m, struct nw_worker *w, struct child_plan *p)
{
	const struct nw_config *c = w->gen->config;
	size_t n = 0, i;
	char listen_fds[512] = "";
	char pythonpath[4096] = "";
	const char *user_pythonpath;

	while (environ[n] != NULL)
		n++;
	p->envcap = n + c->nenv + 48;
	p->envp = nw_calloc(p->envcap, sizeof *p->envp);
	for (i = 0; i < n; i++)
		if (!env_is_private(environ[i]))
			p->envp[p->nenv++] = nw_strdup(environ[i]);
	for (i = 0; i < c->nenv; i++)
		if (strcmp(c->env[i].name, "PYTHONPATH") != 0)
			env_add(p, c->env[i].name, c->env[i].value);

	/* The shim goes first on PYTHONPATH; the worker takes it back out. */
	user_pythonpath = config_env(c, "PYTHONPATH");
	if (user_pythonpath == NULL)
		user_pythonpath = getenv("PYTHONPATH");
	if (shim_is_own(m->shim_dir, c->python)) {
		/* Installed from a wheel: its interpreter imports the shim
		 * from site-packages, which must not go before the stdlib. */
		if (user_pythonpath != NULL && *user_pythonpath != '\0')
			env_add(p, "PYTHONPATH", user_pythonpath);
	} else {
		if (user_pythonpath != NULL && *user_pythonpath != '\0')
			snprintf(pythonpath, sizeof pythonpath, "%s:%s",
			    m->shim_dir, user_pythonpath);
		else
			snprintf(pythonpath, sizeof pythonpath, "%s",
			    m->shim_dir);
		env_add(p, "PYTHONPATH", pythonpath);
	}
	env_add(p, "NARWHAL_SHIM_PATH", m->shim_dir);

	for (i = 0; i < m->nlisteners; i++) {
		size_t used = strlen(listen_fds);

		snprintf(listen_fds + used, sizeof listen_fds - used, "%s%d",
		    i ? "," : "", FD_FIRST_LISTENER + (int)i);
	}
	env_add(p, "NARWHAL_APP", c->app);
	env_add(p, "NARWHAL_INTERFACE", interface_names[c->interface]);
	env_add(p, "NARWHAL_ASYNCIO_LOOP", c->asyncio_loop);
	env_add(p, "NARWHAL_WORKER_CLASS", worker_kind_names[c->worker_kind]);
	env_addf(p, "NARWHAL_THREADS", "%d", c->threads);
	env_addf(p, "NARWHAL_WORKER_ID", "%u", w->id);
	env_addf(p, "NARWHAL_GENERATION", "%u", w->gen->id);
	env_add(p, "NARWHAL_CHDIR", w->gen->tree);
	pythonpath[0] = '\0';
	for (i = 0; i < c->npythonpath; i++) {
		size_t used = strlen(pythonpath);

		snprintf(pythonpath + used, sizeof pythonpath - used, "%s%s",
		    i ? ":" : "", c->pythonpath[i]);
	}
	env_add(p, "NARWHAL_PYTHONPATH", pythonpath);
	env_addf(p, "NARWHAL_CONTROL_FD", "%d", FD_CONTROL);
	env_addf(p, "NARWHAL_PRIVATE_FD", "%d", FD_PRIVATE);
	env_add(p, "NARWHAL_LISTEN_FDS", listen_fds);
	env_addf(p, "NARWHAL_MAX_REQUESTS", "%lu", w->budget);
	/* Often enough for the watchdog and for fresh counters; timeout = 0
	 * turns the deadline off, not the heartbeat. */
	env_addf(p, "NARWHAL_HEARTBEAT", "%g",
	    c->timeout > 0 && c->timeout / 4. < c->metrics_interval
	    ? c->timeout / 4. : c->metrics_interval);
	env_addf(p, "NARWHAL_KEEPALIVE", "%g", c->keepalive);
	env_addf(p, "NARWHAL_HEADER_TIMEOUT", "%g", c->header_timeout);
	/* Below the heartbeat timeout: a client that does not read costs its
	 * connection, never the worker (issue 15). */
	env_addf(p, "NARWHAL_WRITE_TIMEOUT", "%g",
	    c->write_timeout < c->timeout / 2 ? c->write_timeout
					      : c->timeout / 2);
	env_addf(p, "NARWHAL_WORKER_CONNECTIONS", "%d", c->worker_connections);
	env_addf(p, "NARWHAL_MIN_BODY_RATE", "%lld", c->min_body_rate);
	env_addf(p, "NARWHAL_GRACEFUL_TIMEOUT", "%g", c->graceful_timeout);
	env_addf(p, "NARWHAL_LIMIT_REQUEST_LINE", "%ld", c->limit_request_line);
	env_addf(p, "NARWHAL_LIMIT_REQUEST_FIELDS", "%ld",
	    c->limit_request_fields);
	env_addf(p, "NARWHAL_LIMIT_REQUEST_FIELD_SIZE", "%ld",
	    c->limit_request_field_size);
	env_addf(p, "NARWHAL_LIMIT_REQUEST_BODY", "%lld",
	    c->limit_request_body);
	env_addf(p, "NARWHAL_WS_MAX_SIZE", "%lld", c->ws_max_size);
	env_addf(p, "NARWHAL_WS_MAX_QUEUE", "%d", c->ws_max_queue);
	env_addf(p, "NARWHAL_WS_PING_INTERVAL", "%g", c->ws_ping_interval);
	env_addf(p, "NARWHAL_WS_PING_TIMEOUT", "%g", c->ws_ping_timeout);
	env_addf(p, "NARWHAL_WS_PER_MESSAGE_DEFLATE", "%d",
	    c->ws_per_message_deflate);
	if (c->accesslog != NULL)
		env_add(p, "NARWHAL_ACCESSLOG", c->accesslog);
	if (c->access_log_format != NULL)
		env_add(p, "NARWHAL_ACCESS_LOG_FORMAT", c->access_log_format);
	env_add(p, "NARWHAL_FORWARDED_ALLOW_IPS", c->forwarded_allow_ips);
	env_add(p, "NARWHAL_SECURE_SCHEME_HEADERS", c->secure_scheme_headers);
	env_addf(p, "NARWHAL_PROXY_PROTOCOL", "%d", c->proxy_protocol);
	env_add(p, "NARWHAL_PROXY_ALLOW_IPS", c->proxy_allow_ips);
	if (c->certfile != NULL) {
		/* the worker loads them at boot: a reload reads renewed ones */
		env_add(p, "NARWHAL_CERTFILE", c->certfile);
		env_add(p, "NARWHAL_KEYFILE",
		    c->keyfile != NULL ? c->keyfile : c->certfile);
		if (c->ca_certs != NULL)
			env_add(p, "NARWHAL_CA_CERTS", c->ca_certs);
		env_addf(p, "NARWHAL_CERT_REQS", "%d", c->cert_reqs);
		if (c->ciphers != NULL)
			env_add(p, "NARWHAL_CIPHERS", c->ciphers);
	}
	if (c->hooks != NULL && c->path_is_python) {
		env_add(p, "NARWHAL_GUNICORN_CONF", c->path);
		env_add(p, "NARWHAL_HOOKS", c->hooks);
	}
	env_add(p, "NARWHAL_LOGLEVEL", loglevel_names[c->loglevel]);
	p->envp[p->nenv] = NULL;
}

static int
resolve_user(const struct nw_config *c, struct child_plan *p, char *err,
    size_t errlen)
{
	struct passwd *pw = NULL;
	struct group *gr;

	if (c->user == NULL && c->group == NULL)
		return 0;
	p->uid = getuid();
	p->gid = getgid();
	if (c->user != NULL) {
		char *end;
		unsigned long id = strtoul(c->user, &end, 10);

		pw = *end == '\0' ? getpwuid((uid_t)id) : getpwnam(c->user);
		if (pw == NULL) {
			snprintf(err, errlen, "cannot spawn: user '%.60s' does "
			    "not exist", c->user);
			return -1;
		}
		p->uid = pw->pw_uid;
		p->gid = pw->pw_gid;
		snprintf(p->home, sizeof p->home, "%s", pw->pw_dir);
		snprintf(p->name, sizeof p->name, "%s", pw->pw_name);
	}
	if (c->group != NULL) {
		char *end;
		unsigned long id = strtoul(c->group, &end, 10);

		gr = *end == '\0' ? getgrgid((gid_t)id) : getgrnam(c->group);
		if (gr == NULL) {
			snprintf(err, errlen, "cannot spawn: group '%.60s' does "
			    "not exist", c->group);
			return -1;
		}
		p->gid = gr->gr_gid;
	}
	p->ngroups = MAX_GROUPS;
	if (pw == NULL || getgrouplist(pw->pw_name, p->gid, p->groups,
			      &p->ngroups) < 0) {
		p->groups[0] = p->gid;
		p->ngroups = 1;
	}
	p->drop_privileges = geteuid() == 0;
	if (!p->drop_privileges &&
	    (p->uid != geteuid() || p->gid != getegid())) {
		snprintf(err, errlen, "cannot spawn: user '%.60s' group "
		    "'%.60s': only root can switch",
		    c->user ? c->user : "(unchanged)",
		    c->group ? c->group : "(unchanged)");
		return -1;
	}
	return 0;
}

static void
plan_free(struct child_plan *p)
{
	if (p->envp != NULL)
		for (size_t i = 0; i < p->nenv; i++)
			free(p->envp[i]);
	free(p->envp);
	free(p->argv);
}

static int
open_worker_fds(struct nw_master *m, struct nw_worker *w, int *stderr_write,
    int *control_child, int *private_fd)
{
	int pair[2], pipefd[2];

	/*
	 * The master's pid in the name: a master still draining beside a new
	 * one of the same instance (a restart's overlap) must not unlink the
	 * new one's sockets when its own workers exit.
	 */
	snprintf(w->private_path, sizeof w->private_path, "%s/w%u.%d.sock",
	    m->runtime_dir, w->id, (int)getpid());
	*private_fd = nw_unix_listen(w->private_path, 64);
	if (*private_fd < 0) {
		snprintf(w->boot_failure, sizeof w->boot_failure,
		    "cannot spawn: listen on %.200s: %s", w->private_path,
		    strerror(errno));
		w->private_path[0] = '\0';
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
		snprintf(w->boot_failure, sizeof w->boot_failure,
		    "cannot spawn: socketpair: %s", strerror(errno));
		close(*private_fd);
		return -1;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		snprintf(w->boot_failure, sizeof w->boot_failure,
		    "cannot spawn: pipe: %s", strerror(errno));
		close(*private_fd);
		close(pair[0]);
		close(pair[1]);
		return -1;
	}
	fcntl(pair[0], F_SETFL, O_NONBLOCK);
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	w->control_fd = pair[0];
	*control_child = pair[1];
	w->stderr_fd = pipefd[0];
	*stderr_write = pipefd[1];
	return 0;
}

/* Between fork and exec: async-signal-safe calls only, no malloc. */
static void __attribute__((noreturn))
exec_child(struct child_plan *p)
{
	sigset_t none;
	int tmp[64];

	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Move every fd above all targets first, so no dup2 clobbers one. */
	for (int i = 0; i < p->nfds; i++) {
		tmp[i] = fcntl(p->from[i], F_DUPFD_CLOEXEC, 100);
		if (tmp[i] < 0)
			_exit(127);
	}
	for (int i = 0; i < p->nfds; i++)
		if (dup2(tmp[i], p->to[i]) < 0)
			_exit(127);
	if (p->umask >= 0)
		umask((mode_t)p->umask);
	/* Plain system calls, like the ones around them. Before exec, the
	 * interpreter is still one thread: all it starts inherits this. */
	if (p->priority == NW_BOOT_IDLE) {
		struct sched_param zero = { 0 };

		sched_setscheduler(0, SCHED_IDLE, &zero);
	} else if (p->priority == NW_BOOT_LOW) {
		setpriority(PRIO_PROCESS, 0, 19);
	}
	if (p->drop_privileges) {
		if (setgroups((size_t)p->ngroups, p->groups) < 0 ||
		    setgid(p->gid) < 0 || setuid(p->uid) < 0)
			_exit(126);
	}
	execve(p->argv[0], p->argv, p->envp);
	execvpe(p->argv[0], p->argv, p->envp);
	_exit(127);
}

/*
 * A recycling replacement boots while the worker it relieves still serves:
 * capacity is whole, so it need not hurry, but importing an app costs a
 * core for a while and the serving workers' latency would pay. So it boots
 * at boot_priority and is raised back at go-live, or after BOOST_AFTER when
 * spare CPU is too little (supervise.c). Anything else that boots (a cold
 * start, a respawn, a new generation) is missing capacity or a deploy
 * someone waits for: full speed. Lowered only if it can be raised again:
 * that takes root (CAP_SYS_NICE) or an RLIMIT_NICE that lets the master's
 * own nice value be set (systemd: LimitNICE=+0).
 */
static enum nw_boot_priority
boot_priority(const struct nw_worker *w, const struct nw_config *c)
{
	struct rlimit lim;
	int nice_now;

	if (c->boot_priority == NW_BOOT_NORMAL || w->replaces == NULL)
		return NW_BOOT_NORMAL;
	if (geteuid() == 0)
		return c->boot_priority;
	errno = 0;
	nice_now = getpriority(PRIO_PROCESS, 0);
	if (errno != 0 || getrlimit(RLIMIT_NICE, &lim) < 0 ||
	    (lim.rlim_cur != RLIM_INFINITY &&
		lim.rlim_cur < (rlim_t)(20 - nice_now)))
		return NW_BOOT_NORMAL;
	return c->boot_priority;
}

static void
raise_task(pid_t tid, int nice_value)
{
	struct sched_param none = { 0 };

	/* ESRCH: a thread that ended meanwhile. */
	if (sched_setscheduler(tid, SCHED_OTHER, &none) < 0 && errno != ESRCH)
		nw_debug("task %d: SCHED_OTHER: %s", (int)tid, strerror(errno));
	if (setpriority(PRIO_PROCESS, (id_t)tid, nice_value) < 0 &&
	    errno != ESRCH)
		nw_debug("task %d: nice %d: %s", (int)tid, nice_value,
		    strerror(errno));
}

void
nw_spawn_raise_priority(struct nw_master *m, struct nw_worker *w)
{
	char path[64];
	struct dirent *e;
	int nice_value;
	DIR *d;

	if (!w->low_priority || w->pid <= 0)
		return;
	w->low_priority = 0;
	errno = 0;
	nice_value = getpriority(PRIO_PROCESS, 0);
	if (errno != 0)
		nice_value = 0;
	/* Per thread: priorities are a thread's on Linux, and the app may
	 * have started threads while it booted. */
	snprintf(path, sizeof path, "/proc/%d/task", (int)w->pid);
	d = opendir(path);
	if (d == NULL) {
		raise_task(w->pid, nice_value);
		return;
	}
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			raise_task((pid_t)atoi(e->d_name), nice_value);
	closedir(d);
}

static unsigned long
draw(unsigned long base, unsigned long spread)
{
	return base + (spread ? (unsigned long)random() % (spread + 1) : 0);
}

int
nw_spawn(struct nw_master *m, struct nw_worker *w)
{
	const struct nw_config *c = w->gen->config;
	struct child_plan plan;
	int stderr_write = -1, control_child = -1, private_fd = -1;
	pid_t pid;

	memset(&plan, 0, sizeof plan);
	plan.umask = c->umask;
	plan.priority = boot_priority(w, c);
	w->boot_failure[0] = '\0';
	if (resolve_user(c, &plan, w->boot_failure,
		sizeof w->boot_failure) < 0)
		return -1;
	if (m->nlisteners + 4 > sizeof plan.from / sizeof *plan.from) {
		snprintf(w->boot_failure, sizeof w->boot_failure,
		    "cannot spawn: too many listening sockets");
		return -1;
	}
	w->budget = c->max_requests > 0
	    ? nw_supervise_draw_budget(c, (unsigned long)random())
	    : 0;
	w->lifetime = c->max_worker_lifetime > 0
	    ? c->max_worker_lifetime *
		(1. + (double)draw(0, 1000) / 10000.)
	    : 0;
	if (open_worker_fds(m, w, &stderr_write, &control_child,
		&private_fd) < 0)
		return -1;

	plan.argv = nw_calloc(4, sizeof *plan.argv);
	plan.argv[0] = c->python;
	plan.argv[1] = "-m";
	plan.argv[2] = "narwhal_worker";
	build_env(m, w, &plan);
	if (plan.drop_privileges && plan.name[0] != '\0') {
		/* The user's own, as login(1) or runuser(1) would set them:
		 * libraries look for their dotfiles in HOME (~/.postgresql). */
		static const char *const names[] = { "HOME", "USER",
			"LOGNAME" };

		for (size_t i = 0; i < 3; i++)
			if (config_env(c, names[i]) == NULL)
				env_set(&plan, names[i],
				    i == 0 ? plan.home : plan.name);
	}
	plan.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	plan.from[plan.nfds] = plan.devnull;
	plan.to[plan.nfds++] = 0;
	plan.from[plan.nfds] = stderr_write;
	plan.to[plan.nfds++] = FD_STDERR;
	plan.from[plan.nfds] = control_child;
	plan.to[plan.nfds++] = FD_CONTROL;
	plan.from[plan.nfds] = private_fd;
	plan.to[plan.nfds++] = FD_PRIVATE;
	for (size_t i = 0; i < m->nlisteners; i++) {
		plan.from[plan.nfds] = m->listeners[i].fd;
		plan.to[plan.nfds++] = FD_FIRST_LISTENER + (int)i;
	}

	pid = fork();
	if (pid == 0)
		exec_child(&plan);
	close(stderr_write);
	close(control_child);
	close(private_fd);
	if (plan.devnull >= 0)
		close(plan.devnull);
	plan_free(&plan);
	if (pid < 0) {
		snprintf(w->boot_failure, sizeof w->boot_failure,
		    "cannot spawn: fork: %s", strerror(errno));
		nw_spawn_close_fds(m, w);
		close(w->stderr_fd);
		w->stderr_fd = -1;
		return -1;
	}
	w->pid = pid;
	w->low_priority = plan.priority != NW_BOOT_NORMAL;
	w->queued_ns = 0; /* a new process has waited for no CPU yet */
	ev_io_set(&w->control_io, w->control_fd, EV_READ);
	ev_io_start(m->loop, &w->control_io);
	ev_io_set(&w->stderr_io, w->stderr_fd, EV_READ);
	ev_io_start(m->loop, &w->stderr_io);
	ev_child_set(&w->child, pid, 0);
	ev_child_start(m->loop, &w->child);
	return 0;
}

/* The control channel and the private socket die with the process. */
void
nw_spawn_close_fds(struct nw_master *m, struct nw_worker *w)
{
	if (w->control_fd >= 0) {
		ev_io_stop(m->loop, &w->control_io);
		close(w->control_fd);
		w->control_fd = -1;
	}
	if (w->private_path[0] != '\0') {
		unlink(w->private_path);
		w->private_path[0] = '\0';
	}
}
