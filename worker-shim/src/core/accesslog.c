/*
 * accesslog.c: one line per request, in gunicorn's default format.
 *
 * %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s". Lines are
 * buffered and written once per loop turn (or when the buffer fills), so a
 * busy worker does not pay a write per request. USR1 reopens the file.
 * Nothing here holds state: the engine keeps the buffer and the fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* The access log at path: fd 1 for "-"; -1 with errno on failure. */
int
nw_accesslog_open_path(const char *path)
{
	if (strcmp(path, "-") == 0)
		return 1;
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* Writes out the buffered lines and empties the buffer. */
void
nw_accesslog_write(int fd, struct nw_buf *b)
{
	size_t off = 0;

	while (off < b->len && fd >= 0) {
		ssize_t n = write(fd, b->data + off, b->len - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break; /* a full disk loses log lines, not requests */
		}
		off += (size_t)n;
	}
	b->len = 0;
}

/* USR1: *fd points at path again (after a rotation); -1 if it cannot. */
int
nw_accesslog_reopen_path(const char *path, int *fd)
{
	int nfd;

	if (path == NULL || strcmp(path, "-") == 0)
		return 0;
	nfd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (nfd < 0)
		return -1;
	if (*fd > 2)
		close(*fd);
	*fd = nfd;
	return 0;
}

/* Appends p[0..n) with quotes, backslashes and control bytes escaped. */
static void
append_escaped(struct nw_buf *b, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	if (nw_buf_reserve(b, n * 4) < 0)
		return;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\') {
			b->data[b->len++] = '\\';
			b->data[b->len++] = 'x';
			b->data[b->len++] = hex[ch >> 4];
			b->data[b->len++] = hex[ch & 15];
		} else {
			b->data[b->len++] = (char)ch;
		}
	}
}

static void
append_header(struct nw_buf *b, const struct nw_request *req, const char *buf,
    const char *name, size_t namelen)
{
	const struct nw_header *h;

	h = nw_request_header(req, buf, name, namelen);
	if (h == NULL || h->value.len == 0)
		nw_buf_append(b, "-", 1);
	else
		append_escaped(b, buf + h->value.off, h->value.len);
}

/*
 * One line for the request whose head starts at buf. host: the peer's
 * address ("" for a Unix socket); logtime: the clock's "[...]" stamp.
 */
void
nw_accesslog_format(struct nw_buf *b, const char *host, const struct nw_clock *clk,
    const char *buf, const struct nw_request *req, int status, uint64_t sent)
{
	nw_buf_appendstr(b, host[0] ? host : "-");
	nw_buf_append(b, " - - ", 5);
	nw_buf_append(b, clk->logtime, clk->logtime_len);
	nw_buf_append(b, " \"", 2);
	append_escaped(b, buf + req->line.off, req->line.len);
	nw_buf_append(b, "\" ", 2);
	nw_buf_appendu(b, (uint64_t)status);
	nw_buf_append(b, " ", 1);
	nw_buf_appendu(b, sent);
	nw_buf_append(b, " \"", 2);
	append_header(b, req, buf, "referer", 7);
	nw_buf_append(b, "\" \"", 3);
	append_header(b, req, buf, "user-agent", 10);
	nw_buf_append(b, "\"\n", 2);
}
