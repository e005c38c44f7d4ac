/*
 * util.c: small helpers the master's files share: allocation that cannot
 * return NULL, directories and whether they can be trusted, fd flags, and
 * reading a process's RSS. Nothing here knows about workers or the event
 * loop.
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

/*
 * One step of nw_path_trusted(): path is a directory (or a symlink to one)
 * that only owner or root can change. A sticky directory may be writable
 * by all above the last step: no one else can rename or remove our entries.
 */
static int
trusted_step(const char *path, uid_t owner, int last, int sticky_ok,
    char *err, size_t errlen)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_uid != owner && st.st_uid != 0) {
		snprintf(err, errlen,
		    "%s is owned by uid %u, not by uid %u or root: another "
		    "user controls it; remove it or choose another directory",
		    path, (unsigned)st.st_uid, (unsigned)owner);
		return -1;
	}
	if (S_ISLNK(st.st_mode))
		return 0; /* its owner is the one who can change it */
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: %s", path, strerror(ENOTDIR));
		return -1;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) &&
	    !((st.st_mode & S_ISVTX) && (!last || sticky_ok))) {
		snprintf(err, errlen,
		    "%s is writable by %s (mode %04o): another user could "
		    "replace what is in it; chmod go-w it or choose another "
		    "directory",
		    path, st.st_mode & S_IWOTH ? "everyone" : "its group",
		    (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

static int
trusted_walk(const char *dir, uid_t owner, int sticky_ok, char *err,
    size_t errlen)
{
	char buf[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof buf) {
		snprintf(err, errlen, "%s: %s", dir, strerror(ENAMETOOLONG));
		return -1;
	}
	memcpy(buf, dir, len + 1);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	if (buf[0] == '/' && trusted_step("/", owner, len == 1, sticky_ok, err,
		errlen) < 0)
		return -1;
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		if (trusted_step(buf, owner, 0, sticky_ok, err, errlen) < 0)
			return -1;
		*p = '/';
	}
	if (len > 1)
		return trusted_step(buf, owner, 1, sticky_ok, err, errlen);
	return 0;
}

int
nw_path_trusted(const char *dir, uid_t owner, int sticky_ok, char *err,
    size_t errlen)
{
	char real[PATH_MAX];

	/* As written: no one else may swap a symlink or a directory on the
	 * way. As resolved: no one else may change where it leads. */
	if (dir[0] == '/' && trusted_walk(dir, owner, sticky_ok, err,
		errlen) < 0)
		return -1;
	if (realpath(dir, real) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	return trusted_walk(real, owner, sticky_ok, err, errlen);
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

/* How long the process's main thread has waited, runnable, for a CPU (ns):
 * the second field of /proc/PID/schedstat. -1 when the kernel keeps none. */
long long
nw_proc_queued_ns(pid_t pid)
{
	char path[64];
	long long ran, queued;
	FILE *f;
	int n;

	snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fscanf(f, "%lld %lld", &ran, &queued);
	fclose(f);
	return n == 2 ? queued : -1;
}
