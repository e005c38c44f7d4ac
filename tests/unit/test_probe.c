/*
 * test_probe.c: what the master keeps of a probe's answer: the status and
 * the start of the body, parsed from the first bytes of an HTTP/1.x answer
 * (the warm-up request's plain socket), and made one printable line for the
 * log, `status` and `reload --wait`.
 */
#include <string.h>

#include "master.h"
#include "tap.h"

static void
parse(const char *answer, long want_status, const char *want_body,
    const char *name)
{
	char buf[1024], kept[NW_PROBE_BODY_KEEP];
	const char *body;
	size_t bodylen;
	long status = 0;
	int rc;

	snprintf(buf, sizeof buf, "%s", answer);
	rc = nw_probe_parse(buf, strlen(buf), &status, &body, &bodylen);
	if (want_status < 0) {
		ok(rc < 0, "%s: not an answer", name);
		return;
	}
	is_int(rc, 0, "%s: an answer", name);
	is_int(status, want_status, "%s: status", name);
	nw_probe_keep_body(kept, sizeof kept, body, bodylen);
	is_str(kept, want_body, "%s: body", name);
}

int
main(void)
{
	char kept[NW_PROBE_BODY_KEEP], big[600];

	parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", 200, "ok",
	    "plain 200");
	parse("HTTP/1.0 503 Service Unavailable\r\n\r\ndb: OperationalError: "
	      "password authentication failed\nfor user \"app\"\n",
	    503, "db: OperationalError: password authentication failed for "
	    "user \"app\"", "503 with a multi-line body");
	parse("HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: "
	      "chunked\r\n\r\n1b\r\n<h1>Server Error (500)</h1>\r\n0\r\n\r\n",
	    500, "<h1>Server Error (500)</h1> 0", "chunked: size line skipped");
	parse("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n", 404,
	    "", "the head alone");
	parse("SSH-2.0-OpenSSH\r\n", -1, NULL, "not HTTP");
	parse("HTTP/2 200\r\n\r\n", -1, NULL, "not HTTP/1.x");
	parse("", -1, NULL, "nothing");

	nw_probe_keep_body(kept, sizeof kept, "a\tb\r\n\x01\xc3\xa9z", 9);
	is_str(kept, "a b ???z", "control bytes and non-ASCII become ?");
	memset(big, 'x', sizeof big);
	nw_probe_keep_body(kept, sizeof kept, big, sizeof big);
	is_int(strlen(kept), NW_PROBE_BODY_KEEP - 1, "a long body is cut");
	return done_testing();
}
