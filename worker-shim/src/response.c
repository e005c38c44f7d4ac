/*
 * response.c: getting bytes to a client, and what every response shares.
 *
 * Blocking writers over non-blocking sockets (writev, sendfile), the canned
 * error responses, and the per-second Date header. Like the parser, nothing
 * here touches Python; waiting is delegated to the caller's wait hook.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "http.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

static int
wait_writable(const struct nw_writer *w, int fd)
{
	return w->wait(w->arg, fd, w->timeout_ms);
}

int
nw_writev_all(const struct nw_writer *w, int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		ssize_t n;

		while (iovcnt > 0 && iov->iov_len == 0) {
			iov++;
			iovcnt--;
		}
		if (iovcnt == 0)
			break;
		n = writev(fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_writable(w, fd) == 0)
				continue;
			return -1;
		}
		while (n > 0) {
			if ((size_t)n >= iov->iov_len) {
				n -= (ssize_t)iov->iov_len;
				iov->iov_len = 0;
				iov++;
				iovcnt--;
			} else {
				iov->iov_base = (char *)iov->iov_base + n;
				iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

int
nw_send_all(const struct nw_writer *w, int fd, const void *p, size_t n)
{
	struct iovec iov = {(void *)p, n};

	return nw_writev_all(w, fd, &iov, 1);
}

int
nw_send_flags(
    const struct nw_writer *w, int fd, const void *p, size_t n, int flags)
{
	const char *s = p;

	while (n > 0) {
		ssize_t r = send(fd, s, n, flags | MSG_NOSIGNAL);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_writable(w, fd) == 0)
				continue;
			return -1;
		}
		s += r;
		n -= (size_t)r;
	}
	return 0;
}

int
nw_sendfile_all(const struct nw_writer *w, int fd, int in_fd, off_t off,
    uint64_t n, uint64_t *sent)
{
	*sent = 0;
	while (*sent < n) {
		size_t want =
		    n - *sent > (1u << 30) ? (1u << 30) : (size_t)(n - *sent);
		ssize_t r = sendfile(fd, in_fd, &off, want);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_writable(w, fd) == 0)
				continue;
			return -1;
		}
		if (r == 0)
			return -1; /* the file shrank under us */
		*sent += (uint64_t)r;
	}
	return 0;
}

const char *
nw_status_reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 408:
		return "Request Timeout";
	case 413:
		return "Payload Too Large";
	case 414:
		return "URI Too Long";
	case 417:
		return "Expectation Failed";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}

const char *
nw_error_response(int status, size_t *len)
{
	static char buf[16][192];
	static int ready[16];
	static const int codes[] = {
	    400, 408, 413, 414, 417, 431, 500, 501, 503, 505};
	size_t i;
	int n;

	for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
		if (codes[i] == status)
			break;
	if (i == sizeof codes / sizeof codes[0]) {
		status = 500;
		i = 6;
	}
	if (!ready[i]) {
		const char *reason = nw_status_reason(status);

		n = snprintf(buf[i], sizeof buf[i],
		    "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
		    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
		    status, reason, strlen(reason) + 1, reason);
		ready[i] = n;
	}
	*len = (size_t)ready[i];
	return buf[i];
}

size_t
nw_error_iov(int status, const struct nw_clock *clock, struct iovec iov[3])
{
	size_t len, head;
	const char *r = nw_error_response(status, &len);
	const char *blank = memmem(r, len, "\r\n\r\n", 4);

	head = (size_t)(blank - r) + 2;
	iov[0].iov_base = (void *)r;
	iov[0].iov_len = head;
	iov[1].iov_base = (void *)clock->date;
	iov[1].iov_len = clock->date_len;
	iov[2].iov_base = (void *)(r + head);
	iov[2].iov_len = len - head;
	return len - head - 2;
}

static const char days[7][4] = {
    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void
nw_clock_update(struct nw_clock *c)
{
	struct timespec ts;
	struct tm tm;
	long off;
	int n;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	c->mono_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec == c->wall && c->date_len != 0)
		return;
	c->wall = ts.tv_sec;
	gmtime_r(&c->wall, &tm);
	n = snprintf(c->date, sizeof c->date,
	    "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday],
	    tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	c->date_len = (size_t)n;
	localtime_r(&c->wall, &tm);
	off = tm.tm_gmtoff / 60;
	n = snprintf(c->logtime, sizeof c->logtime,
	    "[%02d/%s/%04d:%02d:%02d:%02d %c%02ld%02ld]", tm.tm_mday,
	    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, off < 0 ? '-' : '+', (off < 0 ? -off : off) / 60,
	    (off < 0 ? -off : off) % 60);
	c->logtime_len = (size_t)n;
}

int
nw_head_add_header(struct nw_buf *h, const char *n, size_t nl, const char *v,
    size_t vl, struct nw_head_info *info)
{
	bool keep = true;
	size_t i;

	if (nl == 0)
		return NW_HEAD_BAD_NAME;
	for (i = 0; i < nl; i++)
		if (!nw_tchar[(unsigned char)n[i]])
			return NW_HEAD_BAD_NAME;
	for (i = 0; i < vl; i++) {
		unsigned char ch = (unsigned char)v[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return NW_HEAD_BAD_VALUE;
	}
	switch (nl) {
	case 14:
		if (strncasecmp(n, "content-length", 14) == 0) {
			size_t b = 0, e = vl;
			int64_t cl = 0;

			/* int(" 13 ") is 13: apps get away with it elsewhere */
			while (b < e && (v[b] == ' ' || v[b] == '\t'))
				b++;
			while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t'))
				e--;
			if (e == b || e - b > 18)
				return NW_HEAD_BAD_CL;
			for (i = b; i < e; i++) {
				if (v[i] < '0' || v[i] > '9')
					return NW_HEAD_BAD_CL;
				cl = cl * 10 + (v[i] - '0');
			}
			if (info->content_length >= 0 &&
			    info->content_length != cl)
				return NW_HEAD_BAD_CL;
			if (info->content_length >= 0)
				keep = false;
			info->content_length = cl;
		}
		break;
	case 10:
		if (strncasecmp(n, "connection", 10) == 0) {
			/* the server owns Connection: it only learns "close" */
			for (i = 0; i + 5 <= vl; i++)
				if (strncasecmp(v + i, "close", 5) == 0)
					info->app_close = true;
			keep = false;
		} else if (strncasecmp(n, "keep-alive", 10) == 0) {
			keep = false;
		}
		break;
	case 17:
		/* the server frames the body itself */
		if (strncasecmp(n, "transfer-encoding", 17) == 0)
			keep = false;
		break;
	case 2:
		if (strncasecmp(n, "te", 2) == 0)
			keep = false;
		break;
	case 7:
		if (strncasecmp(n, "upgrade", 7) == 0)
			keep = false;
		break;
	case 8:
		if (strncasecmp(n, "trailers", 8) == 0)
			keep = false;
		break;
	case 4:
		if (strncasecmp(n, "date", 4) == 0)
			info->has_date = true;
		break;
	}
	if (keep &&
	    (nw_buf_append(h, n, nl) < 0 || nw_buf_append(h, ": ", 2) < 0 ||
	        nw_buf_append(h, v, vl) < 0 || nw_buf_append(h, "\r\n", 2) < 0))
		return NW_HEAD_NOMEM;
	return NW_HEAD_OK;
}

int
nw_head_finish(struct nw_buf *h, const struct nw_head_info *info,
    struct nw_head_end *e, const struct nw_clock *clock)
{
	int rc = 0;

	e->chunked = false;
	if (info->content_length < 0 && e->status >= 200 && e->status != 204 &&
	    e->status != 304) {
		if (e->known >= 0) {
			rc |= nw_buf_append(h, "Content-Length: ", 16);
			rc |= nw_buf_appendu(h, (uint64_t)e->known);
			rc |= nw_buf_append(h, "\r\n", 2);
		} else if (e->is_head) {
			/* no body follows, framing or not */
		} else if (e->minor >= 1) {
			rc |= nw_buf_append(
			    h, "Transfer-Encoding: chunked\r\n", 28);
			e->chunked = true;
		} else {
			e->close = true; /* HTTP/1.0: the end is the close */
		}
	}
	if (info->app_close || !e->keep)
		e->close = true;
	if (e->close)
		rc |= nw_buf_append(h, "Connection: close\r\n", 19);
	else if (e->minor == 0)
		rc |= nw_buf_append(h, "Connection: keep-alive\r\n", 24);
	if (!info->has_date)
		rc |= nw_buf_append(h, clock->date, clock->date_len);
	rc |= nw_buf_append(h, "\r\n", 2);
	return rc != 0 ? -1 : 0;
}
