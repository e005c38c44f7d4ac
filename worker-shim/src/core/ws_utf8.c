/*
 * ws_utf8.c: incremental UTF-8 validation for WebSocket text messages.
 *
 * RFC 6455 8.1 makes invalid UTF-8 in a text message (or a close reason) a
 * reason to fail the connection with 1007, and a message may arrive split at
 * any byte across frames and reads, so the state between calls is the
 * number of continuation bytes still due and the range the next one must
 * fall in (that range is what excludes overlongs, surrogates and code points
 * above U+10FFFF). ASCII, the common case, is skipped eight bytes at a time.
 */
#include <string.h>

#include "ws.h"

static int
lead(struct nw_utf8 *u, unsigned char c)
{
	u->lo = 0x80;
	u->hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf) {
		u->need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		u->need = 2;
		if (c == 0xe0)
			u->lo = 0xa0; /* overlong below U+0800 */
		else if (c == 0xed)
			u->hi = 0x9f; /* surrogates U+D800..DFFF */
	} else if (c >= 0xf0 && c <= 0xf4) {
		u->need = 3;
		if (c == 0xf0)
			u->lo = 0x90; /* overlong below U+10000 */
		else if (c == 0xf4)
			u->hi = 0x8f; /* above U+10FFFF */
	} else {
		return -1; /* 80..c1 (continuation or overlong), f5..ff */
	}
	return 0;
}

int
nw_utf8_feed(struct nw_utf8 *u, const unsigned char *p, size_t n)
{
	const unsigned char *end;

	if (n == 0) /* an empty frame may come with no buffer: NULL + 0 */
		return 0;
	end = p + n;

	while (p < end) {
		if (u->need == 0) {
			uint64_t w;

			while (end - p >= 8) {
				memcpy(&w, p, 8);
				if (w & 0x8080808080808080ull)
					break;
				p += 8;
			}
			while (p < end && *p < 0x80)
				p++;
			if (p == end)
				break;
			if (lead(u, *p++) < 0)
				return -1;
			continue;
		}
		if (*p < u->lo || *p > u->hi)
			return -1;
		p++;
		u->need--;
		u->lo = 0x80;
		u->hi = 0xbf;
	}
	return 0;
}

bool
nw_utf8_valid(const unsigned char *p, size_t n)
{
	struct nw_utf8 u = {0};

	return nw_utf8_feed(&u, p, n) == 0 && nw_utf8_complete(&u);
}
