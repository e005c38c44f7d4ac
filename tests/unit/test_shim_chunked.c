/*
 * test_shim_chunked.c: the chunked body decoder (core/request.c): what a
 * good body decodes to, whole and split at every byte, extensions and
 * trailers that are read and dropped, and the framing that is refused (bad
 * sizes, a bare CR or LF, an extension without a name, trailers that are no
 * header fields).
 */
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "tap.h"

/*
 * Decodes body in pieces of at most step bytes (0: whole). Returns the
 * decoded length, -1 on an error, -2 if it never finished; out gets the
 * bytes.
 */
static long
decode(const char *body, size_t step, char *out, size_t *consumed)
{
	struct nw_chunked c;
	size_t n = strlen(body), at = 0, got = 0;
	char *buf = malloc(n + 1);
	bool done = false;

	nw_chunked_init(&c);
	while (at < n && !done) {
		size_t piece = step && n - at > step ? step : n - at, len;
		ssize_t used;

		memcpy(buf, body + at, piece);
		len = piece;
		used = nw_chunked_decode(&c, buf, &len, &done);
		if (used < 0) {
			free(buf);
			return -1;
		}
		memcpy(out + got, buf, len);
		got += len;
		at += (size_t)used;
		if ((size_t)used < piece && !done) {
			free(buf);
			return -3; /* it must take all it is given */
		}
	}
	free(buf);
	if (consumed)
		*consumed = at;
	return done ? (long)got : -2;
}

static const struct {
	const char *name, *body, *want;
} good[] = {
    {"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"},
    {"upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
    {"an extension", "5;name=value\r\nhello\r\n0\r\n\r\n", "hello"},
    {"extensions, BWS, a token value", "5; a=1;b\r\nhello\r\n0;last\r\n\r\n",
        "hello"},
    {"a quoted extension", "5;a=\"x;y \\\"z\"\r\nhello\r\n0\r\n\r\n", "hello"},
    {"trailers", "5\r\nhello\r\n0\r\nX-Sum: abc\r\nY:\r\n\r\n", "hello"},
    {"no chunk but the last", "0\r\n\r\n", ""},
};

static const struct {
	const char *name, *body;
} bad[] = {
    {"a size that is no hex", "zz\r\nhello\r\n0\r\n\r\n"},
    {"'6_0'", "5\r\nhello\r\n6_0\r\n world\r\n0\r\n\r\n"},
    {"'-5'", "-5\r\nhello\r\n0\r\n\r\n"},
    {"'+5'", "+5\r\nhello\r\n0\r\n\r\n"},
    {"space after the size", "5\r\nhello\r\n0 \r\n\r\n"},
    {"space before the size", "5\r\nhello\r\n 0\r\n\r\n"},
    {"no size", "\r\nhello\r\n0\r\n\r\n"},
    {"no size, an extension", " ;foo=bar\r\nhello\r\n0\r\n\r\n"},
    {"a bare LF in the size line", "5\n;\r\nhello\r\n0\r\n\r\n"},
    {"a bare CR in an extension", "5;ext=val\rue\r\nhello\r\n0\r\n\r\n"},
    {"an empty extension, '5;'", "5;\r\nhello\r\n0\r\n\r\n"},
    {"an extension without a name", "5;=x\r\nhello\r\n0\r\n\r\n"},
    {"';;'", "5;a;;b\r\nhello\r\n0\r\n\r\n"},
    {"an unclosed quoted extension", "5;a=\"x\r\nhello\r\n0\r\n\r\n"},
    {"data longer than its size", "5\r\nhelloXX\r\n0\r\n\r\n"},
    {"an overflowing size", "ffffffffffffffffffff\r\nx\r\n0\r\n\r\n"},
    {"a trailer without a colon", "0\r\nNoColon\r\n\r\n"},
    {"a folded trailer", "0\r\nX: a\r\n folded\r\n\r\n"},
    {"a trailer starting with a tab", "0\r\n\tX: a\r\n\r\n"},
    {"space in a trailer's name", "0\r\nBad Name: v\r\n\r\n"},
    {"space before a trailer's colon", "0\r\nX : v\r\n\r\n"},
    {"an empty trailer name", "0\r\n: v\r\n\r\n"},
    {"a control byte in a trailer", "0\r\nX: a\x01\r\n\r\n"},
    {"a bare LF after the trailers", "0\r\nX: a\r\n\n"},
};

int
main(void)
{
	char out[256];
	size_t i, step, consumed;

	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		long n = decode(good[i].body, 0, out, &consumed);
		int split_ok = 1;

		ok(n == (long)strlen(good[i].want) &&
		        memcmp(out, good[i].want, (size_t)n) == 0,
		    "%s: decodes", good[i].name);
		is_int(consumed, strlen(good[i].body), "%s: to its last byte",
		    good[i].name);
		for (step = 1; step < strlen(good[i].body); step++) {
			n = decode(good[i].body, step, out, NULL);
			if (n != (long)strlen(good[i].want) ||
			    memcmp(out, good[i].want, (size_t)n) != 0)
				split_ok = 0;
		}
		ok(split_ok, "%s: the same split anywhere", good[i].name);
	}
	{
		const char *s = "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";

		decode(s, 0, out, &consumed);
		is_int(consumed, strlen(s) - 16,
		    "what follows the body is left alone");
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int split_ok = 1;

		is_int(decode(bad[i].body, 0, out, NULL), -1, "%s: refused",
		    bad[i].name);
		for (step = 1; step < strlen(bad[i].body); step++)
			if (decode(bad[i].body, step, out, NULL) != -1)
				split_ok = 0;
		ok(split_ok, "%s: refused however it is split", bad[i].name);
	}
	{
		struct nw_chunked c;
		char buf[] = "100000\r\nabc";
		size_t len = sizeof buf - 1;
		bool done;

		nw_chunked_init(&c);
		ok(nw_chunked_decode(&c, buf, &len, &done) > 0 &&
		        c.size == 0x100000 - 3,
		    "the declared size is known before the data (for 413)");
	}
	return done_testing();
}
