/*
 * test_front.c: the worker core's side of a proxy, without Python: address
 * lists (forwarded_allow_ips, proxy_allow_ips), secure_scheme_headers, the
 * PROXY protocol (v1, v2, partial and broken headers) and access_log_format
 * (every atom, escaping, JSON).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/front.h"
#include "tap.h"

static struct sockaddr_storage
addr(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof ss);
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &s4->sin_addr);
	}
	return ss;
}

static void
test_iplist(void)
{
	struct nw_iplist l;
	struct sockaddr_storage ss;
	char why[200];

	ok(nw_iplist_parse(&l, "127.0.0.1, ::1,10.0.0.0/8", why,
	    sizeof why) == 0, "parse");
	ss = addr("10.200.3.4");
	ok(nw_iplist_match(&l, &ss), "10.0.0.0/8 has 10.200.3.4");
	ss = addr("11.0.0.1");
	ok(!nw_iplist_match(&l, &ss), "but not 11.0.0.1");
	ss = addr("::ffff:127.0.0.1");
	ok(nw_iplist_match(&l, &ss), "a v4-mapped address is its v4 one");
	ss = addr("::1");
	ok(nw_iplist_match(&l, &ss), "::1");
	ss.ss_family = AF_UNIX;
	ok(!nw_iplist_match(&l, &ss), "Unix peers only when unix_ok");
	nw_iplist_free(&l);
	ok(nw_iplist_parse(&l, "*", why, sizeof why) == 0 && l.any, "*");
	nw_iplist_free(&l);
	ok(nw_iplist_parse(&l, "1.2.3.4/33", why, sizeof why) < 0, "/33");
	is_str(why, "'1.2.3.4/33' is not an IP address, a network (10.0.0.0/8) or *", "why");
	ok(nw_iplist_parse(&l, "example.com", why, sizeof why) < 0,
	    "no names");
}

static void
test_scheme_headers(void)
{
	struct nw_scheme_headers t;
	char why[200];

	ok(nw_scheme_headers_parse(&t, "X-FORWARDED-PROTO=https, "
	    "X-Forwarded-Ssl = on", why, sizeof why) == 0, "parse");
	is_int((long long)t.n, 2, "two headers");
	ok(nw_scheme_headers_claim(&t, "x-forwarded-proto", 17, "HTTPS", 5),
	    "names and values ignore case");
	ok(!nw_scheme_headers_claim(&t, "x-forwarded-proto", 17, "http", 4),
	    "another value does not claim");
	ok(nw_scheme_headers_claim(&t, "X-Forwarded-Ssl", 15, "on", 2),
	    "blanks around = are trimmed");
	nw_scheme_headers_free(&t);
	ok(nw_scheme_headers_parse(&t, "X-ONLY-NAME", why, sizeof why) < 0,
	    "a name without a value");
}

static void
test_proxy(void)
{
	static const unsigned char v2[] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00,
		0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, 12,
		198, 51, 100, 9, 192, 0, 2, 1, 0x9c, 0x40, 0x01, 0xbb, 'G' };
	static const unsigned char local[] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00,
		0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0, 0 };
	const char *v1 = "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET";
	const char *v16 = "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
	struct nw_proxy_info pi;
	int n;

	n = nw_proxy_parse(v1, strlen(v1), &pi);
	is_int(n, (long long)strlen(v1) - 3, "v1: the header's length");
	is_str(pi.src, "203.0.113.7", "v1: source");
	is_int(pi.src_port, 56324, "v1: source port");
	is_int(nw_proxy_parse(v1, 20, &pi), NW_PROXY_AGAIN, "v1: partial");
	is_int(nw_proxy_parse(v1, 3, &pi), NW_PROXY_AGAIN, "v1: 3 bytes");
	n = nw_proxy_parse(v16, strlen(v16), &pi);
	ok(n > 0 && strcmp(pi.src, "2001:db8::1") == 0, "v1: TCP6");
	is_int(nw_proxy_parse("PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n", 30, &pi),
	    NW_PROXY_INVALID, "v1: a bad address");
	is_int(nw_proxy_parse("PROXY UDP4 1.2.3.4 4.5.6.7 1 2\r\n", 32, &pi),
	    NW_PROXY_INVALID, "v1: not TCP");
	n = nw_proxy_parse("PROXY UNKNOWN\r\n", 15, &pi);
	ok(n == 15 && pi.local, "v1: UNKNOWN keeps the peer");
	is_int(nw_proxy_parse("GET / HTTP/1.1\r\n", 16, &pi),
	    NW_PROXY_INVALID, "a request is not a PROXY header");

	n = nw_proxy_parse((const char *)v2, sizeof v2, &pi);
	is_int(n, 28, "v2: 16 + 12 bytes");
	is_str(pi.src, "198.51.100.9", "v2: source");
	is_int(pi.src_port, 40000, "v2: source port");
	is_int(pi.dst_port, 443, "v2: destination port");
	is_int(nw_proxy_parse((const char *)v2, 20, &pi), NW_PROXY_AGAIN,
	    "v2: partial");
	n = nw_proxy_parse((const char *)local, sizeof local, &pi);
	ok(n == 16 && pi.local, "v2: LOCAL");
}

static void
test_alogfmt(void)
{
	const char *head = "GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n"
	    "X-Trace: \"q\"\r\nUser-Agent: ua\r\n"
	    "Authorization: Basic dXNlcjpwYXNz\r\n\r\n";
	struct nw_limits lim = { 4094, 100, 8190, 0 };
	struct nw_clock clk;
	struct nw_request r;
	struct nw_alogfmt *f;
	struct nw_buf b = { 0 };
	struct nw_alog_entry e;
	char why[200], want[512];

	memset(&r, 0, sizeof r);
	nw_request_reset(&r);
	if (!ok(nw_request_parse(&r, head, strlen(head), &lim) ==
	    NW_PARSE_DONE, "the request parses"))
		return;
	memset(&clk, 0, sizeof clk);
	strcpy(clk.logtime, "[03/Dec/2026:17:00:00 +0000]");
	clk.logtime_len = strlen(clk.logtime);
	memset(&e, 0, sizeof e);
	e.host = "1.2.3.4";
	e.clock = &clk;
	e.buf = head;
	e.req = &r;
	e.status = 200;
	e.sent = 1234;
	e.duration_us = 1500123;

	f = nw_alogfmt_compile("%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s "
	    "%(b)s \"%(f)s\" \"%(a)s\" %(m)s %(U)s %(q)s %(H)s %(T)s %(D)s "
	    "%(M)s %(L)s %(p)s %({x-trace}i)s %({x-none}i)s %(zz)s %(s)d%% "
	    "%({content-type}o)s", why, sizeof why);
	if (!ok(f != NULL, "compile: %s", why))
		return;
	nw_alogfmt_render(&b, f, &e);
	snprintf(want, sizeof want, "1.2.3.4 - user [03/Dec/2026:17:00:00 "
	    "+0000] \"GET /a/b?x=1 HTTP/1.1\" 200 1234 \"-\" \"ua\" GET /a/b "
	    "x=1 HTTP/1.1 1 1500123 1500 1.500123 <%d> \\x22q\\x22 - - 200%% "
	    "-\n", (int)getpid());
	ok(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0,
	    "every atom: %.*s", (int)b.len, b.data);
	nw_alogfmt_free(f);

	b.len = 0;
	f = nw_alogfmt_compile("json", why, sizeof why);
	nw_alogfmt_render(&b, f, &e);
	ok(b.len > 0 && memmem(b.data, b.len, "\"status\":200,\"bytes\":1234,"
	    "\"duration_us\":1500123,\"user\":\"user\"", 58) != NULL,
	    "json: %.*s", (int)b.len, b.data);
	nw_alogfmt_free(f);

	/* the answer's headers ({header}o) and the environ ({NAME}e) */
	b.len = 0;
	e.resp_head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
	    "X-Request-Id:  abc\"1 \r\n\r\n";
	e.resp_head_len = strlen(e.resp_head);
	setenv("NW_TEST_ALOG", "from the env", 1);
	f = nw_alogfmt_compile("%({content-type}o)s %({X-Request-ID}o)s "
	    "%({x-none}o)s %({NW_TEST_ALOG}e)s %({NW_TEST_UNSET}e)s "
	    "%({REQUEST_METHOD}e)s %({PATH_INFO}e)s %({QUERY_STRING}e)s "
	    "%({HTTP_X_TRACE}e)s %({http_user_agent}e)s %({REMOTE_ADDR}e)s "
	    "%({SERVER_PROTOCOL}e)s", why, sizeof why);
	if (ok(f != NULL, "compile {}o and {}e: %s", why)) {
		nw_alogfmt_render(&b, f, &e);
		strcpy(want, "text/html abc\\x221 - from the env - GET /a/b "
		    "x=1 \\x22q\\x22 ua 1.2.3.4 HTTP/1.1\n");
		ok(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0,
		    "{}o and {}e: %.*s", (int)b.len, b.data);
	}
	nw_alogfmt_free(f);
	b.len = 0;
	e.resp_head = NULL;
	e.resp_head_len = 0;
	f = nw_alogfmt_compile("%({content-type}o)s", why, sizeof why);
	nw_alogfmt_render(&b, f, &e);
	ok(b.len == 2 && memcmp(b.data, "-\n", 2) == 0,
	    "{}o without a head: -");
	nw_alogfmt_free(f);

	ok(nw_alogfmt_compile("%(h", why, sizeof why) == NULL,
	    "an unclosed atom is refused");
	ok(nw_alogfmt_compile("100% sure", why, sizeof why) == NULL,
	    "a lone % is refused");
	nw_buf_free(&b);
	nw_request_free(&r);
}

int
main(void)
{
	test_iplist();
	test_scheme_headers();
	test_proxy();
	test_alogfmt();
	return done_testing();
}
