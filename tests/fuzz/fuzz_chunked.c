/*
 * fuzz_chunked.c: libFuzzer harness for the chunked transfer-coding decoder
 * alone (nw_chunked_decode), on any bytes.
 *
 * The same input decoded in one call, byte by byte, and in pieces of sizes
 * the input picks must give the same bytes, the same end and the same
 * error: a decoder that depends on how reads fall is a smuggling vector.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "fuzz_chunked: %s:%d: %s\n", __FILE__, \
			    __LINE__, #cond);                                  \
			abort();                                               \
		}                                                              \
	} while (0)

struct outcome {
	int error;
	int done;
	size_t consumed; /* input bytes, up to the end of the body */
	size_t out;      /* decoded bytes, at the start of buf */
};

/* Feeds data in pieces of step(i) bytes, decoding into buf. */
static struct outcome
decode(const char *data, size_t len, char *buf, size_t (*step)(size_t, void *),
    void *arg)
{
	struct nw_chunked c;
	struct outcome o = { 0 };
	size_t i = 0;

	nw_chunked_init(&c);
	memcpy(buf, data, len);
	while (i < len) {
		size_t n = step(i, arg), got;
		ssize_t r;
		bool done;

		if (n == 0 || n > len - i)
			n = len - i;
		/* The piece sits right after what was decoded so far. */
		memmove(buf + o.out, data + i, n);
		got = n;
		r = nw_chunked_decode(&c, buf + o.out, &got, &done);
		if (r < 0) {
			o.error = 1;
			return o;
		}
		CHECK((size_t)r <= n && got <= (size_t)r);
		o.out += got;
		i += (size_t)r;
		if (done) {
			o.done = 1;
			break;
		}
		CHECK((size_t)r == n);
	}
	o.consumed = i;
	return o;
}

static size_t
all(size_t i, void *arg)
{
	return 0;
}

static size_t
one(size_t i, void *arg)
{
	return 1;
}

/* Piece sizes from the input's own bytes: 1 to 16. */
static size_t
picked(size_t i, void *arg)
{
	const uint8_t *sizes = arg;

	return 1 + (sizes[i % 7] >> (i % 4)) % 16;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	char *a = malloc(size + 1), *b = malloc(size + 1), *c = malloc(size + 1);
	uint8_t sizes[7] = { 3, 1, 4, 1, 5, 9, 2 };
	struct outcome oa, ob, oc;

	CHECK(a != NULL && b != NULL && c != NULL);
	memcpy(sizes, data, size < sizeof sizes ? size : sizeof sizes);
	oa = decode(in, size, a, all, NULL);
	ob = decode(in, size, b, one, NULL);
	oc = decode(in, size, c, picked, sizes);
	CHECK(oa.error == ob.error && oa.error == oc.error);
	if (!oa.error) {
		CHECK(oa.done == ob.done && oa.done == oc.done);
		CHECK(oa.consumed == ob.consumed && oa.consumed == oc.consumed);
		CHECK(oa.out == ob.out && oa.out == oc.out);
		CHECK(memcmp(a, b, oa.out) == 0 && memcmp(a, c, oa.out) == 0);
		CHECK(oa.out <= oa.consumed);
	}
	free(a);
	free(b);
	free(c);
	return 0;
}
