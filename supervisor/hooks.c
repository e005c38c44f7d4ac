/*
 * hooks.c: gunicorn's master-side server hooks (on_starting, when_ready,
 * on_reload, child_exit, worker_exit, nworkers_changed, on_exit) from a
 * gunicorn.conf.py, run without Python ever entering the master.
 *
 * Each call is a short-lived `python -m narwhal_worker.hooks FILE HOOK
 * name=value...` of the configured interpreter, in the code tree, with the
 * workers' environment, reaped by libev. on_starting and on_exit run before
 * and after the loop, so they are waited for (bounded), as gunicorn runs them
 * before it binds and after its workers are gone. A failing hook is a
 * warning: the master never stops because of one.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

/* How long the master waits for on_starting and on_exit. */
#define HOOK_WAIT 30.0
#define HOOK_ARGS 8

struct hook_proc {
	ev_child child;
	char name[32];
};

int
nw_hook_defined(const struct nw_config *c, const char *hook)
{
	size_t n = strlen(hook);
	const char *p;

	if (c->hooks == NULL || !c->path_is_python)
		return 0;
	for (p = c->hooks; (p = strstr(p, hook)) != NULL; p += n)
		if ((p == c->hooks || p[-1] == ',') &&
		    (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

static void
on_hook_exit(struct ev_loop *loop, ev_child *c, int revents)
{
	struct hook_proc *h = container_of(c, struct hook_proc, child);

	ev_child_stop(loop, c);
	if (!WIFEXITED(c->rstatus) || WEXITSTATUS(c->rstatus) != 0)
		nw_warn("hook %s: pid %d %s %d", h->name, c->rpid,
		    WIFEXITED(c->rstatus) ? "exited with status" :
		    "killed by signal", WIFEXITED(c->rstatus) ?
		    WEXITSTATUS(c->rstatus) : WTERMSIG(c->rstatus));
	free(h);
}

/* The helper's environment: the master's, the workers' [env], the shim. */
static char **
hook_env(struct nw_master *m, const struct nw_config *c)
{
	char **base = nw_helper_env(m->shim_dir, c->python), **envp;
	size_t n = 0, k = 0, i, j, len;

	if (base == NULL)
		return NULL;
	while (base[n] != NULL)
		n++;
	envp = nw_calloc(n + c->nenv + 2, sizeof *envp);
	for (i = 0; i < n; i++) {
		for (j = 0; j < c->nenv; j++) {
			len = strlen(c->env[j].name);
			if (strncmp(base[i], c->env[j].name, len) == 0 &&
			    base[i][len] == '=')
				break;
		}
		if (j < c->nenv)
			free(base[i]);
		else
			envp[k++] = base[i];
	}
	free(base);
	for (j = 0; j < c->nenv; j++) {
		int rc;

		/* The shim stays importable: it goes first. */
		if (strcmp(c->env[j].name, "PYTHONPATH") == 0)
			rc = asprintf(&envp[k], "PYTHONPATH=%s:%s",
			    m->shim_dir, c->env[j].value);
		else
			rc = asprintf(&envp[k], "%s=%s", c->env[j].name,
			    c->env[j].value);
		if (rc >= 0)
			k++;
	}
	if (asprintf(&envp[k], "NARWHAL_MASTER_PID=%d", (int)getpid()) >= 0)
		k++;
	envp[k] = NULL;
	return envp;
}

/* Starts the helper; its pid, or -1. args: "name=value" strings. */
static pid_t
hook_spawn(struct nw_master *m, const struct nw_generation *g,
    const char *hooks, const char *const *args)
{
	const struct nw_config *c = g->config;
	char *argv[6 + HOOK_ARGS], **envp, workers[32];
	sigset_t none;
	size_t n = 0;
	pid_t pid;

	snprintf(workers, sizeof workers, "num_workers=%d", m->target);
	argv[n++] = c->python;
	argv[n++] = "-m";
	argv[n++] = "narwhal_worker.hooks";
	argv[n++] = c->path;
	argv[n++] = (char *)hooks;
	argv[n++] = workers;
	for (size_t i = 0; args != NULL && args[i] != NULL &&
	     n < sizeof argv / sizeof *argv - 1; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	if ((envp = hook_env(m, c)) == NULL)
		return -1;
	sigemptyset(&none);
	pid = fork();
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		/* Its prints and tracebacks go where the master's stderr
		 * goes; stdin is the master's /dev/null or terminal. */
		dup2(2, 1);
		if (chdir(g->tree) < 0)
			_exit(126);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	for (char **e = envp; *e != NULL; e++)
		free(*e);
	free(envp);
	if (pid < 0)
		nw_warn("hook %s: fork: %s", hooks, strerror(errno));
	return pid;
}

/* hooks: one name, or several run in order by one helper ("a,b"). */
static void
hook_start(struct nw_master *m, const char *hooks, const char *const *args)
{
	struct hook_proc *h;
	pid_t pid;

	if ((pid = hook_spawn(m, m->current, hooks, args)) < 0)
		return;
	h = nw_calloc(1, sizeof *h);
	snprintf(h->name, sizeof h->name, "%s", hooks);
	ev_child_init(&h->child, on_hook_exit, pid, 0);
	ev_child_start(m->loop, &h->child);
	nw_debug("hook %s: pid %d", hooks, (int)pid);
}

void
nw_hook_call(struct nw_master *m, const char *hook, const char *const *args)
{
	if (m->current != NULL && nw_hook_defined(m->current->config, hook))
		hook_start(m, hook, args);
}

/* Outside the loop (before it runs, after it ended): wait, bounded. */
void
nw_hook_call_wait(struct nw_master *m, const char *hook)
{
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	double waited = 0;
	int status;
	pid_t pid, r;

	if (m->current == NULL || !nw_hook_defined(m->current->config, hook))
		return;
	if ((pid = hook_spawn(m, m->current, hook, NULL)) < 0)
		return;
	while ((r = waitpid(pid, &status, WNOHANG)) == 0 &&
	    waited < HOOK_WAIT) {
		nanosleep(&pause, NULL);
		waited += 0.02;
	}
	if (r == 0) {
		nw_warn("hook %s: still running after %gs, killed", hook,
		    HOOK_WAIT);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return;
	}
	if (r > 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		nw_warn("hook %s: failed (status %d)", hook,
		    WIFEXITED(status) ? WEXITSTATUS(status) : 128 +
		    WTERMSIG(status));
}

/*
 * A worker is gone: child_exit as gunicorn's master calls it, and
 * worker_exit too when the worker could not run its own (it was killed).
 */
void
nw_hook_worker_gone(struct nw_master *m, struct nw_worker *w)
{
	const struct nw_config *c = m->current->config;
	char pid[32], age[32], status[32];
	const char *args[] = { pid, age, status, NULL };
	int killed = WIFSIGNALED(w->exit_status);

	if (!nw_hook_defined(c, "child_exit") &&
	    !(killed && nw_hook_defined(c, "worker_exit")))
		return;
	snprintf(pid, sizeof pid, "pid=%d", (int)w->pid);
	snprintf(age, sizeof age, "age=%u", w->id);
	snprintf(status, sizeof status, "exitcode=%d",
	    WIFEXITED(w->exit_status) ? WEXITSTATUS(w->exit_status) :
	    -WTERMSIG(w->exit_status));
	if (killed && nw_hook_defined(c, "worker_exit") &&
	    nw_hook_defined(c, "child_exit"))
		hook_start(m, "worker_exit,child_exit", args);
	else if (killed && nw_hook_defined(c, "worker_exit"))
		hook_start(m, "worker_exit", args);
	else
		hook_start(m, "child_exit", args);
}

void
nw_hook_nworkers_changed(struct nw_master *m, int new_value, int old_value)
{
	char nv[32], ov[32];
	const char *args[] = { nv, ov, NULL };

	snprintf(nv, sizeof nv, "new_value=%d", new_value);
	snprintf(ov, sizeof ov, "old_value=%d", old_value);
	nw_hook_call(m, "nworkers_changed", args);
}
