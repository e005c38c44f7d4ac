/*
 * util.c: small helpers the master's files share: allocation that cannot
 * return NULL, directories, fd flags, and reading a process's RSS.
 * Nothing here knows about workers or the event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

/* Out of memory in the master is a broken invariant: say so and stop. */
static void __attribute__((noreturn))
out_of_memory(void)
{
	nw_log(NW_LOG_CRITICAL, "out of memory");
	abort();
}

char *
nw_strdup(const char *s)
{
	char *copy = strdup(s);

	if (copy == NULL)
		out_of_memory();
	return copy;
}

void *
nw_calloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		out_of_memory();
	return p;
}

int
nw_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int
nw_set_cloexec(int fd, int on)
{
	int flags = fcntl(fd, F_GETFD);

	if (flags < 0)
		return -1;
	flags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
	return fcntl(fd, F_SETFD, flags);
}

long long
nw_proc_rss(pid_t pid)
{
	char path[64];
	long long pages_total, pages_rss;
	FILE *f;
	int n;

	snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fscanf(f, "%lld %lld", &pages_total, &pages_rss);
	fclose(f);
	if (n != 2)
		return -1;
	return pages_rss * sysconf(_SC_PAGESIZE);
}
