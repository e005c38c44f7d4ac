/*
 * test_shim_request.c: the worker's request parser (core/request.c) without
 * a socket: what a good head parses to, the same head fed a byte at a time,
 * the 4xx each broken or oversized head gets, the request targets that are
 * accepted or refused, and the percent-decoder.
 */
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "tap.h"

static const struct nw_limits limits = {4094, 100, 8190, 0};

/* Parses s in one piece: the result, the request left in r. */
static int
parse(struct nw_request *r, const char *s)
{
	nw_request_reset(r);
	return nw_request_parse(r, s, strlen(s), &limits);
}

/* The status a head gets: 0 when it parses. */
static int
status_of(const char *s)
{
	struct nw_request r = {0};
	int rc = parse(&r, s), st;

	st = rc == NW_PARSE_DONE ? 0 : rc == NW_PARSE_AGAIN ? -1 : r.status;
	nw_request_free(&r);
	return st;
}

static int
span_is(const char *buf, struct nw_span sp, const char *want)
{
	return sp.len == strlen(want) &&
	    memcmp(buf + sp.off, want, sp.len) == 0;
}

static void
a_good_head(void)
{
	const char *s = "\r\nPOST /a%20b/c?x=1&y=2#frag HTTP/1.1\r\n"
	                "Host: example.com\r\n"
	                "Content-Length: 5\r\n"
	                "Connection: keep-alive\r\n"
	                "X-Empty:\r\n"
	                "\r\nhello";
	struct nw_request r = {0};
	const struct nw_header *h;

	is_int(parse(&r, s), NW_PARSE_DONE, "a good head parses");
	ok(span_is(s, r.method, "POST"), "method");
	ok(span_is(s, r.target, "/a%20b/c?x=1&y=2#frag"), "target");
	ok(span_is(s, r.path, "/a%20b/c"), "path");
	ok(span_is(s, r.query, "x=1&y=2"), "query, without the fragment");
	is_int(r.minor, 1, "HTTP/1.1");
	is_int(r.content_length, 5, "Content-Length");
	ok(r.keep_alive && !r.chunked && !r.is_head, "keep-alive, not chunked");
	is_int(r.nheaders, 4, "four headers");
	is_int(r.head_len, strlen(s) - 5, "the head ends before the body");
	h = nw_request_header(&r, s, "x-empty", 7);
	ok(h != NULL && h->value.len == 0, "an empty value");
	ok(nw_request_header(&r, s, "HOST", 4) != NULL,
	    "names are found whatever their case");
	nw_request_free(&r);
}

static void
byte_by_byte(void)
{
	const char *s = "GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n";
	size_t n = strlen(s), i;
	struct nw_request r = {0};
	int rc = NW_PARSE_AGAIN;

	nw_request_reset(&r);
	for (i = 1; i <= n && rc == NW_PARSE_AGAIN; i++)
		rc = nw_request_parse(&r, s, i, &limits);
	is_int(rc, NW_PARSE_DONE, "a head fed a byte at a time parses");
	is_int(i - 1, n, "...at its last byte");
	is_int(r.nheaders, 2, "...with its headers");
	nw_request_free(&r);
}

static void
framing(void)
{
	struct nw_request r = {0};

	parse(&r,
	    "POST / HTTP/1.1\r\nHost: h\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n");
	ok(r.chunked && r.content_length == -1, "chunked");
	parse(&r, "GET / HTTP/1.0\r\n\r\n");
	ok(!r.keep_alive, "HTTP/1.0 closes by default");
	parse(&r, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	ok(r.keep_alive, "...unless it asks");
	parse(&r, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
	ok(!r.keep_alive, "Connection: close");
	parse(&r, "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
	ok(r.is_head, "HEAD");
	parse(&r,
	    "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
	    "Content-Length: 1\r\n\r\n");
	ok(r.expect_continue, "Expect: 100-continue");
	parse(&r,
	    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
	    "Content-Length: 3\r\n\r\n");
	is_int(r.content_length, 3, "the same Content-Length twice");
	nw_request_free(&r);
}

static const struct {
	const char *name, *head;
	int status;
} bad[] = {
    {"bare LF", "GET / HTTP/1.1\nHost: h\n\n", 400},
    {"no Host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
    {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
    {"a bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 400},
    {"HTTP/0.99", "GET / HTTP/0.99\r\nHost: h\r\n\r\n", 400},
    {"HTTP/111", "GET / HTTP/111\r\nHost: h\r\n\r\n", 400},
    {"FTP/1.1", "GET / FTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"no target", "GET HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"':' in the method", "GET: / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},
    {"space before the colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
    {"no colon", "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400},
    {"BEL in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\ab\r\n\r\n", 400},
    {"DEL in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400},
    {"CL and TE",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        400},
    {"TE twice",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
        "chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400},
    {"TE gzip",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
        "chunked, gzip\r\n\r\n",
        400},
    {"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"two CLs",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
        "Content-Length: 4\r\n\r\n",
        400},
    {"CL -1", "POST / HTTP/1.0\r\nContent-Length: -1\r\n\r\n", 400},
    {"CL +1", "POST / HTTP/1.0\r\nContent-Length: +1\r\n\r\n", 400},
    {"CL 0_1", "POST / HTTP/1.0\r\nContent-Length: 0_1\r\n\r\n", 400},
    {"CL '5, 5'", "POST / HTTP/1.0\r\nContent-Length: 5, 5\r\n\r\n", 400},
    {"a relative target", "GET foo/bar HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"authority-form, not CONNECT",
        "GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"a broken absolute URL", "PUT s://]ufd/: HTTP/1.1\r\nHost: h\r\n\r\n",
        400},
    {"no host in the URL", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"userinfo in the URL", "GET http://u@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        400},
    {"a bad scheme", "GET 1http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"a port that is no number", "GET http://h:8x/ HTTP/1.1\r\nHost: h\r\n\r\n",
        400},
    {"'*' but for OPTIONS", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"CONNECT without a port",
        "CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"CONNECT to a path", "CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"a TLS hello", "\x16\x03\x01\x02\x00\x01", 400},
};

static const struct {
	const char *name, *head, *path;
} good[] = {
    {"origin-form", "GET /p?q HTTP/1.1\r\nHost: h\r\n\r\n", "/p"},
    {"absolute-form",
        "GET http://example.com:8080/p?q HTTP/1.1\r\n"
        "Host: h\r\n\r\n",
        "/p"},
    {"absolute-form, no path",
        "GET https://example.com HTTP/1.1\r\n"
        "Host: h\r\n\r\n",
        ""},
    {"an IPv6 literal", "GET http://[::1]:80/x HTTP/1.1\r\nHost: h\r\n\r\n",
        "/x"},
    {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "*"},
    {"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", ""},
};

static void
refused_and_accepted(void)
{
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		is_int(status_of(bad[i].head), bad[i].status, "%s: %d",
		    bad[i].name, bad[i].status);
	{
		static const char nul[] = "GET\0 / HTTP/1.1\r\nHost: h\r\n\r\n";
		struct nw_request r = {0};

		nw_request_reset(&r);
		is_int(nw_request_parse(&r, nul, sizeof nul - 1, &limits),
		    NW_PARSE_ERROR, "NUL in the method: 400");
		nw_request_free(&r);
	}
	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		struct nw_request r = {0};

		is_int(
		    parse(&r, good[i].head), NW_PARSE_DONE, "%s", good[i].name);
		ok(span_is(good[i].head, r.path, good[i].path),
		    "%s: path \"%s\"", good[i].name, good[i].path);
		nw_request_free(&r);
	}
}

static void
limits_hit(void)
{
	char *s = malloc(20000);
	size_t n;
	int i;

	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', 5000);
	strcpy(s + 5005, " HTTP/1.1\r\nHost: h\r\n\r\n");
	is_int(status_of(s), 414, "a request line over the limit: 414");
	s[5005] = '\0';
	is_int(status_of(s), 414, "...even before it ends");
	n = (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
	memset(s + n, 'b', 9000);
	strcpy(s + n + 9000, "\r\n\r\n");
	is_int(status_of(s), 431, "a header line over the limit: 431");
	n = (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: h\r\n");
	for (i = 0; i < 150; i++)
		n += (size_t)sprintf(s + n, "X-%d: v\r\n", i);
	strcpy(s + n, "\r\n");
	is_int(status_of(s), 431, "too many header lines: 431");
	free(s);
	is_int(status_of("GET / HTTP/1.1\r\nHo"), -1, "a partial head waits");
}

static void
decoding(void)
{
	struct nw_buf scratch = {0};
	const char *p = "/a%20b%2Fc%zz%4", *q = "/plain";
	size_t n = strlen(p), m = strlen(q);

	is_int(nw_path_decode(&scratch, &p, &n), 0, "a path with escapes");
	ok(n == 11 && memcmp(p, "/a b/c%zz%4", 11) == 0,
	    "decoded, with bad escapes left alone");
	is_int(nw_path_decode(&scratch, &q, &m), 0, "a path without");
	ok(q[0] == '/' && m == 6, "left where it was");
	nw_buf_free(&scratch);
}

int
main(void)
{
	a_good_head();
	byte_by_byte();
	framing();
	refused_and_accepted();
	limits_hit();
	decoding();
	return done_testing();
}
