/*
 * response.c: what every response shares.
 *
 * The canned error responses, the check of an app's response headers and
 * the framing, Connection and Date the server adds after them. Nothing here
 * touches Python or a socket.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/http.h"

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
