/*
 * accesslog.c: one line per request, in gunicorn's default format.
 *
 * %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s". Lines are
 * buffered and written once per loop turn (or when the buffer fills), so a
 * busy worker does not pay a write per request. USR1 reopens the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"

#define ALOG_FLUSH_AT (64 * 1024)

int
nw_alog_open(struct nw_server *s)
{
	if (s->alog_path == NULL)
		return 0;
	if (strcmp(s->alog_path, "-") == 0) {
		s->alog_fd = 1;
		return 0;
	}
	s->alog_fd =
	    open(s->alog_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	return s->alog_fd < 0 ? -1 : 0;
}

int
nw_alog_reopen(struct nw_server *s)
{
	int fd;

	if (s->alog_path == NULL || strcmp(s->alog_path, "-") == 0)
		return 0;
	nw_alog_flush(s);
	fd =
	    open(s->alog_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		nw_server_log(s, "cannot reopen the access log %s: %s",
		    s->alog_path, strerror(errno));
		return -1;
	}
	if (s->alog_fd > 2)
		close(s->alog_fd);
	s->alog_fd = fd;
	return 0;
}

void
nw_alog_flush(struct nw_server *s)
{
	size_t off = 0;

	while (off < s->alog.len && s->alog_fd >= 0) {
		ssize_t n =
		    write(s->alog_fd, s->alog.data + off, s->alog.len - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break; /* a full disk loses log lines, not requests */
		}
		off += (size_t)n;
	}
	s->alog.len = 0;
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
append_header(struct nw_buf *b, struct nw_conn *c, const char *buf,
    const char *name, size_t namelen)
{
	const struct nw_header *h;

	h = nw_request_header(&c->req, buf, name, namelen);
	if (h == NULL || h->value.len == 0)
		nw_buf_append(b, "-", 1);
	else
		append_escaped(b, buf + h->value.off, h->value.len);
}

void
nw_alog_request(
    struct nw_server *s, struct nw_conn *c, int status, uint64_t sent)
{
	struct nw_buf *b = &s->alog;
	const char *buf = c->in.data + c->rpos;

	if (s->alog_fd < 0)
		return;
	nw_buf_appendstr(b, c->host[0] ? c->host : "-");
	nw_buf_append(b, " - - ", 5);
	nw_buf_append(b, s->clock.logtime, s->clock.logtime_len);
	nw_buf_append(b, " \"", 2);
	append_escaped(b, buf + c->req.line.off, c->req.line.len);
	nw_buf_append(b, "\" ", 2);
	nw_buf_appendu(b, (uint64_t)status);
	nw_buf_append(b, " ", 1);
	nw_buf_appendu(b, sent);
	nw_buf_append(b, " \"", 2);
	append_header(b, c, buf, "referer", 7);
	nw_buf_append(b, "\" \"", 3);
	append_header(b, c, buf, "user-agent", 10);
	nw_buf_append(b, "\"\n", 2);
	if (b->len >= ALOG_FLUSH_AT)
		nw_alog_flush(s);
}
