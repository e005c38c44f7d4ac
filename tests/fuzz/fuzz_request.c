/*
 * fuzz_request.c: libFuzzer harness for the request head parser and what a
 * serving loop does right after it (header lookups, path decoding, the
 * chunked body that may follow), on any bytes.
 *
 * Besides memory errors (ASan) and undefined behaviour (UBSan), it checks
 * that a head arriving in two reads parses as it does in one (a partial
 * line may be refused early), and that every span the parser returns lies
 * inside the head. abort() is a finding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "fuzz_request: %s:%d: %s\n", __FILE__, \
			    __LINE__, #cond);                                  \
			abort();                                               \
		}                                                              \
	} while (0)

/* narwhal's defaults (conf/narwhal.ini), as a worker gets them. */
static const struct nw_limits defaults = {
	.request_line = 4094,
	.fields = 100,
	.field_size = 8190,
	.body = 0,
};

static void
check_span(struct nw_span s, size_t head_len)
{
	CHECK((size_t)s.off + s.len <= head_len);
}

static void
check_done(const struct nw_request *r, const char *buf, size_t len)
{
	char *decoded;
	struct nw_buf scratch = { 0 };
	const char *p;
	size_t n;

	CHECK(r->head_len > 0 && r->head_len <= len);
	check_span(r->line, r->head_len);
	check_span(r->method, r->head_len);
	check_span(r->target, r->head_len);
	check_span(r->path, r->head_len);
	check_span(r->query, r->head_len);
	CHECK(r->method.len > 0);
	CHECK(r->minor == 0 || r->minor == 1);
	CHECK(r->nheaders <= defaults.fields);
	CHECK(!(r->chunked && r->content_length >= 0));
	for (size_t i = 0; i < r->nheaders; i++) {
		check_span(r->headers[i].name, r->head_len);
		check_span(r->headers[i].value, r->head_len);
		CHECK(r->headers[i].name.len > 0);
		CHECK(nw_request_header(r, buf, buf + r->headers[i].name.off,
			  r->headers[i].name.len) != NULL);
	}
	nw_request_header(r, buf, "host", 4);
	nw_request_header(r, buf, "content-length", 14);

	decoded = malloc(r->path.len + 1);
	CHECK(decoded != NULL);
	n = nw_percent_decode(buf + r->path.off, r->path.len, decoded);
	CHECK(n <= r->path.len);
	free(decoded);
	p = buf + r->path.off;
	n = r->path.len;
	CHECK(nw_path_decode(&scratch, &p, &n) == 0);
	CHECK(n <= r->path.len);
	nw_buf_free(&scratch);
}

/* The body after the head: in one call, then again in two, alike. */
static void
decode_body(const char *body, size_t len, size_t cut)
{
	struct nw_chunked one, two;
	char *a = malloc(len + 1), *b = malloc(len + 1);
	size_t alen = len, blen, blen2, bout;
	ssize_t ra, rb, rb2 = 0;
	bool adone, bdone, bdone2 = false;

	CHECK(a != NULL && b != NULL);
	memcpy(a, body, len);
	memcpy(b, body, len);
	nw_chunked_init(&one);
	ra = nw_chunked_decode(&one, a, &alen, &adone);

	nw_chunked_init(&two);
	blen = cut;
	rb = nw_chunked_decode(&two, b, &blen, &bdone);
	bout = blen;
	if (rb >= 0 && !bdone) {
		CHECK((size_t)rb == cut);
		memmove(b + bout, b + cut, len - cut);
		blen2 = len - cut;
		rb2 = nw_chunked_decode(&two, b + bout, &blen2, &bdone2);
		if (rb2 >= 0) {
			bout += blen2;
			rb += rb2;
			bdone = bdone2;
		} else {
			rb = -1;
		}
	}
	CHECK((ra < 0) == (rb < 0));
	if (ra >= 0) {
		CHECK((size_t)ra <= len && alen <= (size_t)ra);
		CHECK(adone == bdone);
		CHECK(ra == rb && alen == bout);
		CHECK(memcmp(a, b, alen) == 0);
	}
	free(a);
	free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nw_request whole = { 0 }, split = { 0 };
	const char *buf = (const char *)data;
	size_t cut;
	int rw, rs;

	if (size < 1)
		return 0;
	/* The first byte says where the head is cut; the rest is the input. */
	cut = data[0];
	buf++;
	size--;
	cut = size ? cut % (size + 1) : 0;

	nw_request_reset(&whole);
	rw = nw_request_parse(&whole, buf, size, &defaults);
	nw_request_reset(&split);
	rs = nw_request_parse(&split, buf, cut, &defaults);
	if (rs == NW_PARSE_AGAIN)
		rs = nw_request_parse(&split, buf, size, &defaults);

	CHECK(rw == NW_PARSE_ERROR || rw == NW_PARSE_AGAIN ||
	    rw == NW_PARSE_DONE);
	/* A partial line may be refused before it ends (its bytes already
	 * say it is bad): ERROR against AGAIN is fine, and which 4xx may
	 * depend on which limit a partial head hit first (431 or 400);
	 * accepting one way and refusing the other is not. */
	CHECK((rw == NW_PARSE_DONE) == (rs == NW_PARSE_DONE));
	if (rw == NW_PARSE_ERROR)
		CHECK(whole.status >= 400 && whole.status < 500);
	if (rs == NW_PARSE_ERROR)
		CHECK(split.status >= 400 && split.status < 500);
	if (rw == NW_PARSE_DONE) {
		CHECK(whole.head_len == split.head_len);
		CHECK(whole.nheaders == split.nheaders);
		CHECK(whole.content_length == split.content_length);
		CHECK(whole.chunked == split.chunked);
		CHECK(whole.keep_alive == split.keep_alive);
		check_done(&whole, buf, size);
		if (whole.chunked) {
			size_t rest = size - whole.head_len;

			decode_body(buf + whole.head_len, rest,
			    rest ? (size_t)data[0] % (rest + 1) : 0);
		}
	}
	nw_request_free(&whole);
	nw_request_free(&split);
	return 0;
}
