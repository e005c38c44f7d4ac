/*
 * ws_deflate.c: permessage-deflate (RFC 7692) with zlib.
 *
 * Negotiation picks the first offer this server can honour and writes the
 * response; the codec compresses whole outgoing messages and inflates
 * incoming ones piecewise for the frame decoder (which bounds the output,
 * so a small frame cannot inflate into a large allocation). zlib streams
 * are allocated on first use: most sockets of a chat or dashboard app never
 * send a message big enough to matter, and an idle one then costs nothing.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "ws.h"

/* ---- negotiation ---- */

struct offer {
	bool server_nct, client_nct;
	int server_bits; /* 0: absent */
	int client_bits; /* 0: absent, -1: present without a value */
	bool bad;
};

static bool
is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

static size_t
skip_ows(const char *s, size_t i, size_t len)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i;
}

/* A token or a quoted-string (unescaped into buf); returns the new index. */
static size_t
read_value(const char *s, size_t i, size_t len, char *buf, size_t bufsize,
    size_t *vlen)
{
	size_t n = 0;

	if (i < len && s[i] == '"') {
		for (i++; i < len && s[i] != '"'; i++) {
			if (s[i] == '\\' && i + 1 < len)
				i++;
			if (n + 1 < bufsize)
				buf[n] = s[i];
			n++;
		}
		if (i < len)
			i++; /* closing quote */
		else
			n = 0; /* unterminated: no value */
	} else {
		for (; i < len && is_tchar(s[i]); i++) {
			if (n + 1 < bufsize)
				buf[n] = s[i];
			n++;
		}
	}
	*vlen = n;
	if (n < bufsize)
		buf[n] = '\0';
	return i;
}

/* RFC 7692 7.1.2: 1*DIGIT, 8..15, no leading zero. */
static int
window_bits(const char *v, size_t n)
{
	if (n == 1 && v[0] >= '8' && v[0] <= '9')
		return v[0] - '0';
	if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
		return 10 + v[1] - '0';
	return 0;
}

static void
offer_param(struct offer *o, const char *name, size_t nlen, bool has_value,
    const char *v, size_t vlen)
{
#define IS(s) (nlen == sizeof(s) - 1 && strncasecmp(name, s, nlen) == 0)
	if (IS("server_no_context_takeover")) {
		o->bad |= o->server_nct || has_value;
		o->server_nct = true;
	} else if (IS("client_no_context_takeover")) {
		o->bad |= o->client_nct || has_value;
		o->client_nct = true;
	} else if (IS("server_max_window_bits")) {
		o->bad |= o->server_bits != 0 || !has_value;
		o->server_bits = has_value ? window_bits(v, vlen) : 0;
		o->bad |= o->server_bits == 0;
	} else if (IS("client_max_window_bits")) {
		o->bad |= o->client_bits != 0;
		o->client_bits = has_value ? window_bits(v, vlen) : -1;
		o->bad |= o->client_bits == 0;
	} else {
		o->bad = true;
	}
#undef IS
}

static bool
accept_offer(const struct nw_ws_pmd_config *cfg, const struct offer *o,
    struct nw_ws_pmd *pmd, char *resp, size_t resp_size)
{
	int sbits = cfg->server_max_window_bits, cbits = 15, n;

	if (o->bad)
		return false;
	if (sbits < 9 || sbits > 15)
		sbits = 15;
	if (o->server_bits != 0 && o->server_bits < sbits)
		sbits = o->server_bits;
	/* zlib cannot compress raw DEFLATE with a 256-byte window */
	if (sbits < 9)
		return false;
	if (o->client_bits != 0) {
		cbits = o->client_bits > 0 ? o->client_bits : 15;
		if (cfg->client_max_window_bits >= 9 &&
		    cfg->client_max_window_bits < cbits)
			cbits = cfg->client_max_window_bits;
	}
	memset(pmd, 0, sizeof(*pmd));
	pmd->on = true;
	pmd->server_bits = (uint8_t)sbits;
	pmd->client_bits = (uint8_t)cbits;
	pmd->server_no_context_takeover =
	    o->server_nct || cfg->server_no_context_takeover;
	pmd->client_no_context_takeover = o->client_nct;
	pmd->mem_level =
	    cfg->mem_level >= 1 && cfg->mem_level <= 9 ? cfg->mem_level : 8;
	pmd->min_size = cfg->min_size;
	n = snprintf(resp, resp_size, "permessage-deflate%s%s",
	    pmd->server_no_context_takeover ? "; server_no_context_takeover"
	                                    : "",
	    pmd->client_no_context_takeover ? "; client_no_context_takeover"
	                                    : "");
	/*
	 * A smaller window than the client allowed needs no announcement (its
	 * inflater copes), and some clients refuse one they did not ask for.
	 */
	if (n > 0 && (size_t)n < resp_size && o->server_bits != 0)
		n += snprintf(resp + n, resp_size - n,
		    "; server_max_window_bits=%d", sbits);
	if (n > 0 && (size_t)n < resp_size && o->client_bits != 0)
		n += snprintf(resp + n, resp_size - n,
		    "; client_max_window_bits=%d", cbits);
	if (n < 0 || (size_t)n >= resp_size) {
		pmd->on = false;
		return false;
	}
	return true;
}

int
nw_ws_pmd_negotiate(const struct nw_ws_pmd_config *cfg, const char *s,
    size_t len, struct nw_ws_pmd *pmd, char *resp, size_t resp_size)
{
	size_t i = 0;

	if (!cfg->enabled)
		return 0;
	while (i < len) {
		struct offer o = {0};
		size_t ns, ne;
		bool ours;

		i = skip_ows(s, i, len);
		if (i < len && s[i] == ',') {
			i++;
			continue;
		}
		ns = i;
		while (i < len && is_tchar(s[i]))
			i++;
		ne = i;
		ours = ne - ns == 18 &&
		    strncasecmp(s + ns, "permessage-deflate", 18) == 0;
		o.bad = ne == ns;
		for (;;) {
			char v[16];
			size_t ps, pe, vlen = 0;
			bool has_value = false;

			i = skip_ows(s, i, len);
			if (i >= len || s[i] == ',')
				break;
			if (s[i] != ';') {
				o.bad = true;
				/* resynchronise at the next element */
				while (i < len && s[i] != ',')
					i++;
				break;
			}
			i = skip_ows(s, i + 1, len);
			ps = i;
			while (i < len && is_tchar(s[i]))
				i++;
			pe = i;
			i = skip_ows(s, i, len);
			if (i < len && s[i] == '=') {
				has_value = true;
				i = read_value(s, skip_ows(s, i + 1, len), len,
				    v, sizeof(v), &vlen);
				if (vlen >= sizeof(v))
					vlen = 0, o.bad = true;
			}
			if (pe == ps)
				o.bad = true;
			else if (ours)
				offer_param(
				    &o, s + ps, pe - ps, has_value, v, vlen);
		}
		if (ours && accept_offer(cfg, &o, pmd, resp, resp_size))
			return 1;
	}
	return 0;
}

/* ---- codec ---- */

enum nw_pmd_result
nw_ws_pmd_inflate(struct nw_ws_pmd *pmd, const unsigned char **in,
    size_t *inlen, unsigned char *out, size_t *outlen)
{
	z_stream *z = pmd->inflater;
	size_t room = *outlen;
	int r;

	if (pmd->ended) {
		*in += *inlen;
		*inlen = 0;
		*outlen = 0;
		return NW_PMD_END;
	}
	if (z == NULL) {
		z = calloc(1, sizeof(*z));
		/* a client's zlib may use 2^9 for the 2^8 it agreed to */
		if (z == NULL ||
		    inflateInit2(z,
		        pmd->client_bits < 9 ? -9 : -(int)pmd->client_bits) !=
		        Z_OK) {
			free(z);
			*outlen = 0;
			return NW_PMD_NOMEM;
		}
		pmd->inflater = z;
	}
	z->next_in = (unsigned char *)*in;
	z->avail_in = *inlen > UINT_MAX ? UINT_MAX : (unsigned)*inlen;
	z->next_out = out;
	z->avail_out = room > UINT_MAX ? UINT_MAX : (unsigned)room;
	r = inflate(z, Z_SYNC_FLUSH);
	*inlen -= (size_t)(z->next_in - *in);
	*in = z->next_in;
	*outlen = (size_t)(z->next_out - out);
	switch (r) {
	case Z_OK:
	case Z_BUF_ERROR: /* no progress possible: input or room used up */
		return NW_PMD_OK;
	case Z_STREAM_END:
		pmd->ended = true;
		*in += *inlen;
		*inlen = 0;
		return NW_PMD_END;
	case Z_MEM_ERROR:
		return NW_PMD_NOMEM;
	default:
		return NW_PMD_FAIL;
	}
}

void
nw_ws_pmd_inflate_done(struct nw_ws_pmd *pmd)
{
	/* after a final block the window is gone: start over either way */
	if (pmd->inflater != NULL &&
	    (pmd->client_no_context_takeover || pmd->ended))
		inflateReset(pmd->inflater);
	pmd->ended = false;
}

long
nw_ws_pmd_deflate(struct nw_ws_pmd *pmd, const void *data, size_t len,
    unsigned char **out, size_t *cap)
{
	z_stream *z = pmd->deflater;
	size_t used = 0;

	if (len > LONG_MAX / 2)
		return -1;
	if (len == 0) {
		/*
		 * 7.2.3.6's one byte: zlib would emit nothing after an earlier
		 * flush, and an empty stored block needs no history.
		 */
		if (*cap == 0) {
			unsigned char *b = malloc(64);

			if (b == NULL)
				return -1;
			*out = b;
			*cap = 64;
		}
		(*out)[0] = 0x00;
		return 1;
	}
	if (z == NULL) {
		z = calloc(1, sizeof(*z));
		if (z == NULL ||
		    deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
		        -(int)pmd->server_bits, pmd->mem_level,
		        Z_DEFAULT_STRATEGY) != Z_OK) {
			free(z);
			return -1;
		}
		pmd->deflater = z;
	}
	z->next_in = (unsigned char *)data;
	z->avail_in = 0;
	for (;;) {
		size_t want = len / 8 + 64;
		size_t in_now;
		int r;

		if (*cap - used < want) {
			size_t ncap =
			    *cap * 2 > used + want ? *cap * 2 : used + want;
			unsigned char *n = realloc(*out, ncap);

			if (n == NULL)
				return -1;
			*out = n;
			*cap = ncap;
		}
		in_now = len > UINT_MAX ? UINT_MAX : len;
		z->avail_in = (unsigned)in_now;
		z->next_out = *out + used;
		z->avail_out =
		    *cap - used > UINT_MAX ? UINT_MAX : (unsigned)(*cap - used);
		r = deflate(z, Z_SYNC_FLUSH);
		if (r != Z_OK && r != Z_BUF_ERROR)
			return -1;
		len -= in_now - z->avail_in;
		used = (size_t)(z->next_out - *out);
		/* the flush is complete once zlib left room unused */
		if (len == 0 && z->avail_in == 0 && z->avail_out > 0)
			break;
	}
	if (pmd->server_no_context_takeover)
		deflateReset(z);
	/* RFC 7692 7.2.1: drop the sync flush's empty stored block tail */
	if (used >= 4 && memcmp(*out + used - 4, "\x00\x00\xff\xff", 4) == 0)
		used -= 4;
	return (long)used;
}

void
nw_ws_pmd_free(struct nw_ws_pmd *pmd)
{
	if (pmd->inflater != NULL) {
		inflateEnd(pmd->inflater);
		free(pmd->inflater);
		pmd->inflater = NULL;
	}
	if (pmd->deflater != NULL) {
		deflateEnd(pmd->deflater);
		free(pmd->deflater);
		pmd->deflater = NULL;
	}
}
