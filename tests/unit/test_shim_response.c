/*
 * test_shim_response.c: response framing in the core (core/response.c):
 * an app's headers checked and the server's own dropped, the framing,
 * Connection and Date the server adds after them, and the canned error
 * answers with their Date.
 */
#include <string.h>

#include "core/http.h"
#include "tap.h"

static struct nw_clock clk;

static int
add(struct nw_buf *h, struct nw_head_info *info, const char *n, const char *v)
{
	return nw_head_add_header(h, n, strlen(n), v, strlen(v), info);
}

/* The head an app's headers get, for a request and a response. */
static const char *
finish(struct nw_buf *h, int status, int minor, bool is_head, bool keep,
    int64_t known, const char *app_header, struct nw_head_end *e)
{
	struct nw_head_info info = {-1, false, false};

	h->len = 0;
	if (app_header) {
		const char *colon = strchr(app_header, ':');

		nw_head_add_header(h, app_header, (size_t)(colon - app_header),
		    colon + 2, strlen(colon + 2), &info);
	}
	memset(e, 0, sizeof *e);
	e->status = status;
	e->minor = minor;
	e->is_head = is_head;
	e->keep = keep;
	e->known = known;
	nw_head_finish(h, &info, e, &clk);
	nw_buf_append(h, "", 1);
	return h->data;
}

static int
has(const char *head, const char *line)
{
	return strstr(head, line) != NULL;
}

static void
app_headers(void)
{
	struct nw_buf h = {0};
	struct nw_head_info info = {-1, false, false};

	is_int(add(&h, &info, "X-A", "1"), NW_HEAD_OK, "a header");
	is_int(add(&h, &info, "Bad Name", "1"), NW_HEAD_BAD_NAME,
	    "a name with a space");
	is_int(add(&h, &info, "", "1"), NW_HEAD_BAD_NAME, "an empty name");
	is_int(add(&h, &info, "X-B", "a\r\nInjected: 1"), NW_HEAD_BAD_VALUE,
	    "CR LF in a value");
	is_int(add(&h, &info, "Content-Length", "x"), NW_HEAD_BAD_CL,
	    "a Content-Length that is no number");
	is_int(add(&h, &info, "Content-Length", " 13 "), NW_HEAD_OK,
	    "Content-Length with spaces around");
	is_int(info.content_length, 13, "...noted");
	is_int(add(&h, &info, "Content-Length", "14"), NW_HEAD_BAD_CL,
	    "a second, different one");
	is_int(add(&h, &info, "Connection", "Close"), NW_HEAD_OK, "Connection");
	ok(info.app_close, "...its close noted");
	add(&h, &info, "Transfer-Encoding", "chunked");
	add(&h, &info, "Keep-Alive", "timeout=5");
	add(&h, &info, "Upgrade", "h2c");
	add(&h, &info, "Date", "Thu, 01 Jan 1970 00:00:00 GMT");
	ok(info.has_date, "the app's Date noted");
	nw_buf_append(&h, "", 1);
	ok(has(h.data, "X-A: 1\r\n") &&
	        has(h.data, "Content-Length:  13 \r\n") &&
	        has(h.data, "Date: Thu"),
	    "the app's own headers are kept");
	ok(!has(h.data, "Connection") && !has(h.data, "Transfer-Encoding") &&
	        !has(h.data, "Keep-Alive") && !has(h.data, "Upgrade"),
	    "hop-by-hop ones are the server's: dropped");
	nw_buf_free(&h);
}

static void
framing(void)
{
	struct nw_buf h = {0};
	struct nw_head_end e;
	const char *s;

	s = finish(&h, 200, 1, false, true, 5, NULL, &e);
	ok(has(s, "Content-Length: 5\r\n") && !e.chunked && !e.close,
	    "a known size: Content-Length, kept alive");
	ok(has(s, clk.date) && strcmp(s + strlen(s) - 4, "\r\n\r\n") == 0,
	    "a Date, then the blank line");
	s = finish(&h, 200, 1, false, true, -1, NULL, &e);
	ok(has(s, "Transfer-Encoding: chunked\r\n") && e.chunked,
	    "unknown on HTTP/1.1: chunked");
	s = finish(&h, 200, 0, false, true, -1, NULL, &e);
	ok(e.close && has(s, "Connection: close\r\n") &&
	        !has(s, "Transfer-Encoding"),
	    "unknown on HTTP/1.0: the close ends it");
	s = finish(&h, 200, 1, true, true, -1, NULL, &e);
	ok(!has(s, "Content-Length") && !e.chunked && !e.close,
	    "HEAD with no size: no framing");
	s = finish(&h, 204, 1, false, true, -1, NULL, &e);
	ok(!has(s, "Content-Length") && !e.chunked, "204: no framing");
	s = finish(&h, 304, 1, false, true, -1, NULL, &e);
	ok(!has(s, "Content-Length") && !e.chunked, "304: no framing");
	s = finish(&h, 200, 1, false, false, 5, NULL, &e);
	ok(e.close && has(s, "Connection: close\r\n"),
	    "no keep-alive: Connection: close");
	s = finish(&h, 200, 1, false, true, 5, "Connection: close", &e);
	ok(e.close && has(s, "Connection: close\r\n"),
	    "the app's Connection: close is honoured");
	s = finish(&h, 200, 1, false, true, -1, "Content-Length: 7", &e);
	ok(has(s, "Content-Length: 7\r\n") && !e.chunked &&
	        strstr(strstr(s, "Content-Length") + 1, "Content-Length") ==
	            NULL,
	    "the app's Content-Length, once, no chunks");
	s = finish(&h, 200, 1, false, true, 5, "Date: x", &e);
	ok(!has(s, clk.date), "the app's Date: none of ours");
	nw_buf_free(&h);
}

static void
errors(void)
{
	struct iovec iov[3];
	size_t body, len;
	const char *r = nw_error_response(413, &len);
	char all[512];

	ok(strncmp(r, "HTTP/1.1 413 Payload Too Large\r\n", 32) == 0,
	    "413's status line");
	body = nw_error_iov(431, &clk, iov);
	ok(iov[1].iov_base == clk.date, "the Date in the middle");
	snprintf(all, sizeof all, "%.*s%.*s%.*s", (int)iov[0].iov_len,
	    (char *)iov[0].iov_base, (int)iov[1].iov_len,
	    (char *)iov[1].iov_base, (int)iov[2].iov_len,
	    (char *)iov[2].iov_base);
	ok(strstr(all, "Connection: close\r\n") != NULL, "it closes");
	is_int(body, strlen(strstr(all, "\r\n\r\n") + 4), "its body length");
	ok(strstr(all, "Content-Length: 32\r\n") != NULL &&
	        strcmp(strstr(all, "\r\n\r\n") + 4,
	            "Request Header Fields Too Large\n") == 0,
	    "Content-Length matches the body");
	r = nw_error_response(299, &len);
	ok(strncmp(r, "HTTP/1.1 500 ", 13) == 0, "an unknown status: 500");
}

int
main(void)
{
	nw_clock_update(&clk);
	app_headers();
	framing();
	errors();
	return done_testing();
}
