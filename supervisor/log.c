/*
 * log.c: formats and writes the master's log lines.
 *
 * It keeps the log's destination, which is process-wide like stderr itself;
 * that is the one piece of mutable state outside struct nw_master, because a
 * log line may be needed before the master exists and after it is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static struct {
	enum nw_loglevel level;
	int fd;          /* 2 unless errorlog names a file */
	char *path;      /* NULL: stderr */
	int journal;     /* stderr is the journal: <N> prefixes, no time */
} log_state = { NW_LOG_INFO, 2, NULL, 0 };

static const char *const level_names[] = {
	"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL",
};

/* syslog priorities: debug 7, info 6, warning 4, err 3, crit 2. */
static const int level_priorities[] = { 7, 6, 4, 3, 2 };

/*
 * JOURNAL_STREAM holds "device:inode" of the journal's stream; stderr is the
 * journal only if it is that very file (it may have been redirected since).
 */
static int
stderr_is_journal(void)
{
	const char *stream = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (stream == NULL || sscanf(stream, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(2, &st) < 0)
		return 0;
	return st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino;
}

void
nw_log_init(enum nw_loglevel level)
{
	log_state.level = level;
	log_state.journal = stderr_is_journal();
}

void
nw_log_set_level(enum nw_loglevel level)
{
	log_state.level = level;
}

int
nw_log_open(const char *path)
{
	int fd;

	if (path == NULL || strcmp(path, "-") == 0) {
		if (log_state.fd != 2)
			close(log_state.fd);
		log_state.fd = 2;
		free(log_state.path);
		log_state.path = NULL;
		log_state.journal = stderr_is_journal();
		return 0;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (log_state.fd != 2)
		close(log_state.fd);
	log_state.fd = fd;
	if (log_state.path != path) {
		free(log_state.path);
		log_state.path = strdup(path);
	}
	log_state.journal = 0;
	return 0;
}

void
nw_log_reopen(void)
{
	if (log_state.path != NULL && nw_log_open(log_state.path) < 0)
		nw_log(NW_LOG_ERROR, "cannot reopen %s: %s", log_state.path,
		    strerror(errno));
}

void
nw_log(enum nw_loglevel level, const char *fmt, ...)
{
	char line[4096];
	size_t len = 0;
	int saved_errno = errno;
	va_list ap;
	int n;

	if (level < log_state.level)
		return;
	if (log_state.journal) {
		n = snprintf(line, sizeof line, "<%d>",
		    level_priorities[level]);
	} else {
		struct timespec now;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S +0000", &tm);
		n = snprintf(line, sizeof line, "[%s] [%d] [%s] ", stamp,
		    (int)getpid(), level_names[level]);
	}
	len = n > 0 ? (size_t)n : 0;
	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof line - len - 1, fmt, ap);
	va_end(ap);
	if (n > 0)
		len += (size_t)n < sizeof line - len - 1 ? (size_t)n
							   : sizeof line - len - 2;
	line[len++] = '\n';
	/* One write per line so lines from several writers never interleave. */
	if (write(log_state.fd, line, len) < 0) {
		/* nowhere left to report it */
	}
	errno = saved_errno;
}
