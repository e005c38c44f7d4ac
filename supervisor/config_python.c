/*
 * config_python.c: reads a gunicorn.conf.py the only way it can be read,
 * by running it: in a short-lived `python -m narwhal_worker.gunicorn_conf
 * FILE` of the configured interpreter, never in the master. The helper
 * prints the settings as tab-separated lines (see gunicorn_conf.py), which
 * config.c applies like the INI file's.
 *
 * This runs while a config loads, at start-up, on `--check-config` and on
 * reload, so it waits for the helper itself (bounded by HELPER_TIMEOUT): a
 * config is either whole or refused before anything else happens. The
 * helper's stderr is the master's, so a traceback lands in the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config_internal.h"

extern char **environ;

#define HELPER_TIMEOUT 30.0
#define HELPER_OUTPUT_MAX (1 << 20)

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The caller's environment with the shim first on PYTHONPATH. */
char **
nw_helper_env(const char *shim_dir, const char *python)
{
	size_t n = 0, k = 0;
	const char *old = getenv("PYTHONPATH");
	char **envp;

	while (environ[n] != NULL)
		n++;
	if ((envp = calloc(n + 2, sizeof(*envp))) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "PYTHONPATH=", 11) != 0 &&
		    strncmp(environ[i], "NOTIFY_SOCKET=", 14) != 0 &&
		    strncmp(environ[i], "LISTEN_", 7) != 0)
			envp[k++] = strdup(environ[i]);
	if (nw_shim_in_site_packages(shim_dir) && python != NULL) {
		/* The environment's own interpreter finds it there. */
		char *own = nw_installed_python();

		if (own != NULL && strcmp(own, python) == 0) {
			free(own);
			if (old != NULL && asprintf(&envp[k++], "PYTHONPATH=%s",
			    old) < 0)
				envp[--k] = NULL;
			return envp;
		}
		free(own);
	}
	if (asprintf(&envp[k++], "PYTHONPATH=%s%s%s", shim_dir,
	    old != NULL && *old != '\0' ? ":" : "", old != NULL ? old : "") < 0)
		envp[--k] = NULL;
	return envp;
}

static int
read_all(int fd, pid_t pid, char **out, char *err, size_t errlen)
{
	double deadline = now() + HELPER_TIMEOUT;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	struct pollfd pfd = { fd, POLLIN, 0 };
	ssize_t n;
	int left;

	if (buf == NULL)
		goto nomem;
	for (;;) {
		left = (int)((deadline - now()) * 1000);
		if (left <= 0) {
			kill(pid, SIGKILL);
			snprintf(err, errlen, "reading it took more than %.0fs",
			    HELPER_TIMEOUT);
			free(buf);
			return -1;
		}
		if (poll(&pfd, 1, left) < 0 && errno != EINTR)
			break;
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len + 1 == cap) {
			char *grown;

			if (cap >= HELPER_OUTPUT_MAX ||
			    (grown = realloc(buf, cap * 2)) == NULL) {
				kill(pid, SIGKILL);
				free(buf);
				goto nomem;
			}
			buf = grown;
			cap *= 2;
		}
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

int
nw_conf_py_run(const char *python, const char *file, char **out, char *err,
    size_t errlen)
{
	char *shim = nw_shim_dir(), **envp;
	char *argv[] = { (char *)python, "-m", "narwhal_worker.gunicorn_conf",
		(char *)file, NULL };
	int pipefd[2], status, rc;
	sigset_t none;
	pid_t pid;

	*out = NULL;
	if (shim == NULL || (envp = nw_helper_env(shim, python)) == NULL) {
		free(shim);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	free(shim);
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		nw_strv_free(envp);
		return -1;
	}
	sigemptyset(&none);
	pid = fork();
	if (pid == 0) {
		/* Only moves fds and execs (see STYLE.md). */
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(pipefd[1], 1) < 0)
			_exit(127);
		execve(python, argv, envp);
		_exit(127);
	}
	close(pipefd[1]);
	nw_strv_free(envp);
	if (pid < 0) {
		close(pipefd[0]);
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	rc = read_all(pipefd[0], pid, out, err, errlen);
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (rc < 0)
		return -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127 &&
	    (*out)[0] == '\0') {
		snprintf(err, errlen, "cannot run %s -m "
		    "narwhal_worker.gunicorn_conf", python);
		goto fail;
	}
	if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 &&
	    strstr(*out, "E\t") == NULL)) {
		snprintf(err, errlen, "%s exited with status %d reading it "
		    "(its traceback is above)", python,
		    WIFEXITED(status) ? WEXITSTATUS(status) : 128 +
		    WTERMSIG(status));
		goto fail;
	}
	return 0;
fail:
	free(*out);
	*out = NULL;
	return -1;
}
