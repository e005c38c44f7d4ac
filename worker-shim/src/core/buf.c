/*
 * buf.c: growable byte buffers.
 *
 * Buffers double when they grow and are kept between requests, so the hot
 * path allocates nothing once a connection has warmed up. No Python here.
 */
#include <stdlib.h>
#include <string.h>

#include "core/http.h"

int
nw_buf_reserve(struct nw_buf *b, size_t extra)
{
	size_t cap;
	char *p;

	if (b->cap - b->len >= extra)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < extra)
		cap *= 2;
	if ((p = realloc(b->data, cap)) == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int
nw_buf_append(struct nw_buf *b, const void *p, size_t n)
{
	if (nw_buf_reserve(b, n) < 0)
		return -1;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int
nw_buf_appendstr(struct nw_buf *b, const char *s)
{
	return nw_buf_append(b, s, strlen(s));
}

int
nw_buf_appendu(struct nw_buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof tmp;

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return nw_buf_append(b, tmp + i, sizeof tmp - i);
}

void
nw_buf_free(struct nw_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
