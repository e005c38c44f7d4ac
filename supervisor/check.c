/*
 * check.c: `narwhal --check-app`, a dry run of one worker's boot.
 *
 * After the config checks, it starts the configured interpreter once, the
 * way the master starts a worker (code tree, user, [env], pythonpath, the
 * shim's loader), imports the app and looks up the callable, and reports
 * an import error with its traceback, as gunicorn's --check-config does.
 * For a Django app it also loads the URL configuration, which Django itself
 * imports only at the first request.
 * It binds nothing, serves nothing and never talks to a running master.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "master.h"

extern char **environ;

static const char dry_run[] =
    "import os, sys, traceback\n"
    "tree = os.getcwd()\n"
    "if sys.path and sys.path[0] in ('', tree):\n"
    "    del sys.path[0]\n"
    "front = [tree] + [os.path.abspath(p) for p in\n"
    "    os.environ.pop('NARWHAL_PYTHONPATH', '').split(':') if p]\n"
    "sys.path[:] = front + [p for p in sys.path if p not in front]\n"
    "spec = os.environ.pop('NARWHAL_APP')\n"
    "try:\n"
    "    from narwhal_worker.loader import load_app\n"
    "    app = load_app(spec)\n"
    "except BaseException:\n"
    "    traceback.print_exc()\n"
    "    sys.exit(3)\n"
    "if not callable(app):\n"
    "    sys.stderr.write('%s: %r is not callable\\n' % (spec, app))\n"
    "    sys.exit(3)\n"
    "if 'django.conf' in sys.modules:\n"
    "    try:\n"
    "        from django.conf import settings\n"
    "        if settings.configured:\n"
    "            from django.urls import get_resolver\n"
    "            get_resolver().url_patterns\n"
    "    except BaseException:\n"
    "        traceback.print_exc()\n"
    "        sys.exit(3)\n";

static int
env_push(char **envp, size_t *n, const char *name, const char *value)
{
	if (asprintf(&envp[*n], "%s=%s", name, value) < 0)
		return -1;
	(*n)++;
	return 0;
}

/* Switches to config's user and group, as spawn.c does for a worker. */
static int
drop_privileges(const struct nw_config *c)
{
	struct passwd *pw = NULL;
	struct group *gr;
	gid_t gid = getgid();

	if (geteuid() != 0 || (c->user == NULL && c->group == NULL))
		return 0;
	if (c->user != NULL) {
		char *end;
		unsigned long id = strtoul(c->user, &end, 10);

		if ((pw = *end ? getpwnam(c->user) : getpwuid((uid_t)id)) ==
		    NULL)
			return -1;
		gid = pw->pw_gid;
		setenv("HOME", pw->pw_dir, 1);
		setenv("USER", pw->pw_name, 1);
		setenv("LOGNAME", pw->pw_name, 1);
	}
	if (c->group != NULL) {
		char *end;
		unsigned long id = strtoul(c->group, &end, 10);

		if ((gr = *end ? getgrnam(c->group) : getgrgid((gid_t)id)) ==
		    NULL)
			return -1;
		gid = gr->gr_gid;
	}
	if ((pw != NULL ? initgroups(pw->pw_name, gid)
			: setgroups(1, &gid)) < 0 ||
	    setgid(gid) < 0 ||
	    (pw != NULL && setuid(pw->pw_uid) < 0))
		return -1;
	return 0;
}

static void __attribute__((noreturn))
run_child(const struct nw_config *c, const char *tree, const char *shim)
{
	size_t n = 0, count = 0;
	char **envp, pythonpath[8192], userpath[4096] = "";
	const char *user_pythonpath = getenv("PYTHONPATH");

	if (chdir(tree) < 0 || drop_privileges(c) < 0) {
		fprintf(stderr, "narwhal: cannot enter %s as %s: %s\n", tree,
		    c->user ? c->user : "this user", strerror(errno));
		_exit(1);
	}
	while (environ[count] != NULL)
		count++;
	envp = calloc(count + c->nenv + 8, sizeof *envp);
	if (envp == NULL)
		_exit(1);
	for (size_t i = 0; i < count; i++)
		if (strncmp(environ[i], "PYTHONPATH=", 11) != 0 &&
		    strncmp(environ[i], "NARWHAL_", 8) != 0)
			envp[n++] = environ[i];
	for (size_t i = 0; i < c->nenv; i++) {
		if (strcmp(c->env[i].name, "PYTHONPATH") == 0)
			user_pythonpath = c->env[i].value;
		else
			env_push(envp, &n, c->env[i].name, c->env[i].value);
	}
	snprintf(pythonpath, sizeof pythonpath, "%s%s%s", shim,
	    user_pythonpath && *user_pythonpath ? ":" : "",
	    user_pythonpath ? user_pythonpath : "");
	env_push(envp, &n, "PYTHONPATH", pythonpath);
	for (size_t i = 0; i < c->npythonpath; i++) {
		size_t used = strlen(userpath);

		snprintf(userpath + used, sizeof userpath - used, "%s%s",
		    i ? ":" : "", c->pythonpath[i]);
	}
	env_push(envp, &n, "NARWHAL_PYTHONPATH", userpath);
	env_push(envp, &n, "NARWHAL_APP", c->app);
	envp[n] = NULL;
	execve(c->python, (char *[]){ c->python, "-c", (char *)dry_run,
	    NULL }, envp);
	fprintf(stderr, "narwhal: cannot execute %s: %s\n", c->python,
	    strerror(errno));
	_exit(1);
}

int
nw_check_app(const struct nw_config *c)
{
	char tree[PATH_MAX], *shim = nw_find_shim_dir();
	struct timespec pause = { 0, 50 * 1000 * 1000 };
	double waited = 0;
	int status;
	pid_t pid;

	if (realpath(c->chdir, tree) == NULL) {
		fprintf(stderr, "narwhal: chdir %s: %s\n", c->chdir,
		    strerror(errno));
		free(shim);
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "narwhal: fork: %s\n", strerror(errno));
		free(shim);
		return 1;
	}
	if (pid == 0)
		run_child(c, tree, shim);
	free(shim);
	/* As long as a worker would have: boot_timeout. */
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (waited >= c->boot_timeout) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fprintf(stderr, "narwhal: %s: importing took longer "
			    "than boot_timeout %gs\n", c->app, c->boot_timeout);
			return 1;
		}
		nanosleep(&pause, NULL);
		waited += 0.05;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("narwhal: %s imports from %s: ok\n", c->app, tree);
		return 0;
	}
	fprintf(stderr, "narwhal: %s does not import from %s (the traceback "
	    "is above)\n", c->app, tree);
	return 1;
}
