/*
 * request.c: HTTP/1.0 and 1.1 request heads and chunked bodies.
 *
 * Parsing is strict and incremental: the head is scanned as bytes arrive,
 * limits are enforced on partial lines, and a complete head is then checked
 * in one pass. Anything ambiguous (bare LF, obs-fold, conflicting framing) is
 * an error, because a lenient parser behind a proxy is a smuggling vector.
 * No Python and no I/O here.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/http.h"

/* Hard caps for limits configured as 0 ("unlimited"). */
#define HARD_LINE_MAX (1024 * 1024)
#define HARD_FIELDS_MAX 32768
#define HARD_HEAD_MAX (4 * 1024 * 1024)
#define MAX_SKIPPED_LINES 8
/* A chunk-size line (with extensions) and all trailers together. */
#define CHUNK_LINE_MAX 4096
#define TRAILERS_MAX (64 * 1024)

/* clang-format off */
/* 1: tchar (RFC 9110 token). */
const unsigned char nw_tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
	['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
	['`'] = 1, ['|'] = 1, ['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
	['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
	['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
	['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
	['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
	['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
	['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
	['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
	['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
	['y'] = 1, ['z'] = 1,
};
/* clang-format on */

static inline bool
is_target_char(unsigned char c)
{
	/* Visible ASCII; raw UTF-8 from sloppy clients passes as latin-1. */
	return c > 0x20 && c != 0x7f;
}

static inline bool
is_value_char(unsigned char c)
{
	return c >= 0x20 ? c != 0x7f : c == '\t';
}

/*
 * Host = uri-host [ ":" port ] (RFC 9110 7.2), checked by byte as Go's
 * net/http does: reg-name, IP-literal and port characters. Whitespace,
 * controls, '@', '/' and the like cannot be part of any host, and a server
 * that passes them on lets a client poison links and caches built from it.
 */
static bool
is_host_value(const char *p, const char *e)
{
	/* clang-format off */
	static const unsigned char ok[256] = {
		['!'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
		['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1,
		['-'] = 1, ['.'] = 1, [':'] = 1, [';'] = 1, ['='] = 1,
		['['] = 1, [']'] = 1, ['_'] = 1, ['~'] = 1,
		['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
		['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
		['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
		['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
		['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1,
		['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
		['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1,
		['Z'] = 1,
		['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1,
		['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
		['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1,
		['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
		['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1,
		['z'] = 1,
	};
	/* clang-format on */

	for (; p < e; p++)
		if (!ok[(unsigned char)*p])
			return false;
	return true;
}

/* RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). */
static bool
is_scheme(const char *p, const char *e)
{
	if (p == e || !((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
		return false;
	for (p++; p < e; p++) {
		unsigned char c = (unsigned char)*p;

		if (!((c | 0x20) >= 'a' && (c | 0x20) <= 'z') &&
		    !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.')
			return false;
	}
	return true;
}

/*
 * A request target's authority, host [":" port] (RFC 9110 4.2: no
 * userinfo): an IP-literal in brackets, or a non-empty reg-name or IPv4
 * address; a port of digits only (need_port: CONNECT's must be there).
 */
static bool
is_authority(const char *p, const char *e, bool need_port)
{
	const char *host = p;

	if (p < e && *p == '[') {
		for (p++; p < e && *p != ']'; p++)
			if (!is_host_value(p, p + 1) || *p == '[')
				return false;
		if (p == e || p == host + 1)
			return false;
		p++;
	} else {
		for (; p < e && *p != ':'; p++)
			if (!is_host_value(p, p + 1) || *p == '[' || *p == ']')
				return false;
		if (p == host)
			return false;
	}
	if (p == e)
		return !need_port;
	if (*p++ != ':' || (p == e && need_port))
		return false;
	for (; p < e; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

static inline int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

void
nw_request_reset(struct nw_request *r)
{
	struct nw_header *headers = r->headers;
	size_t cap = r->headers_cap;

	memset(r, 0, sizeof *r);
	r->headers = headers;
	r->headers_cap = cap;
	r->content_length = -1;
}

void
nw_request_free(struct nw_request *r)
{
	free(r->headers);
	r->headers = NULL;
	r->headers_cap = 0;
}

static int
fail(struct nw_request *r, int status)
{
	r->status = status;
	return NW_PARSE_ERROR;
}

static struct nw_span
span(const char *buf, const char *p, const char *e)
{
	struct nw_span s = {(uint32_t)(p - buf), (uint32_t)(e - p)};

	return s;
}

/* Calls fn for each element of a comma-separated list, OWS trimmed. */
static void
each_token(const char *p, const char *e,
    void (*fn)(void *arg, const char *t, size_t n), void *arg)
{
	while (p < e) {
		const char *c = memchr(p, ',', (size_t)(e - p));
		const char *te = c ? c : e;
		const char *ts = p;

		while (ts < te && (*ts == ' ' || *ts == '\t'))
			ts++;
		while (te > ts && (te[-1] == ' ' || te[-1] == '\t'))
			te--;
		if (te > ts)
			fn(arg, ts, (size_t)(te - ts));
		p = c ? c + 1 : e;
	}
}

struct framing {
	unsigned chunked, other; /* transfer codings */
	bool close, keep_alive;  /* connection options */
};

static void
te_token(void *arg, const char *t, size_t n)
{
	struct framing *f = arg;

	if (n == 7 && strncasecmp(t, "chunked", 7) == 0)
		f->chunked++;
	else
		f->other++;
}

static void
connection_token(void *arg, const char *t, size_t n)
{
	struct framing *f = arg;

	if (n == 5 && strncasecmp(t, "close", 5) == 0)
		f->close = true;
	else if (n == 10 && strncasecmp(t, "keep-alive", 10) == 0)
		f->keep_alive = true;
}

static int
parse_request_line(
    struct nw_request *r, const char *buf, const char *p, const char *e)
{
	const char *s, *t, *te, *q, *h;

	r->line = span(buf, p, e);
	for (s = p; p < e && nw_tchar[(unsigned char)*p]; p++)
		;
	if (p == s || p == e || *p != ' ')
		return fail(r, 400);
	r->method = span(buf, s, p);
	r->is_head = p - s == 4 && memcmp(s, "HEAD", 4) == 0;
	for (t = ++p; p < e && is_target_char((unsigned char)*p); p++)
		;
	if (p == t || p == e || *p != ' ')
		return fail(r, 400);
	te = p++;
	r->target = span(buf, t, te);
	if (e - p != 8 || memcmp(p, "HTTP/1.", 7) != 0 ||
	    (p[7] != '0' && p[7] != '1'))
		return fail(r, 400);
	r->minor = p[7] - '0';

	/*
	 * CONNECT takes authority-form ("host:port") and nothing else; every
	 * other method origin-form ("/p?q") or absolute-form ("http://h/p?q"),
	 * and OPTIONS also "*". Anything else ("foo/bar", "example.com:443") is a 400: an
	 * app would see an empty PATH_INFO, and a proxy may have read it
	 * another way.
	 */
	if (r->method.len == 7 && memcmp(buf + r->method.off, "CONNECT", 7) == 0) {
		if (!is_authority(t, te, true))
			return fail(r, 400);
		r->path = span(buf, te, te);
		r->query = span(buf, te, te);
		return NW_PARSE_DONE;
	}
	s = t;
	if (te - t == 1 && *t == '*') {
		/* asterisk-form: OPTIONS only (RFC 9112 3.2.4) */
		if (r->method.len != 7 ||
		    memcmp(buf + r->method.off, "OPTIONS", 7) != 0)
			return fail(r, 400);
	} else if (*t != '/') {
		const char *sep = NULL;

		for (h = t; h + 3 <= te; h++)
			if (h[0] == ':' && h[1] == '/' && h[2] == '/') {
				sep = h + 3;
				break;
			}
		if (sep == NULL || !is_scheme(t, sep - 3))
			return fail(r, 400);
		for (s = sep; s < te && *s != '/' && *s != '?' && *s != '#';
		     s++)
			;
		if (!is_authority(sep, s, false))
			return fail(r, 400);
	}
	for (q = s; q < te && *q != '?' && *q != '#'; q++)
		;
	r->path = span(buf, s, q);
	if (q < te && *q == '?') {
		const char *qe = memchr(q + 1, '#', (size_t)(te - q - 1));

		r->query = span(buf, q + 1, qe ? qe : te);
	} else {
		r->query = span(buf, te, te);
	}
	return NW_PARSE_DONE;
}

static int
add_header(struct nw_request *r, struct nw_span name, struct nw_span value)
{
	if (r->nheaders == r->headers_cap) {
		size_t cap = r->headers_cap ? r->headers_cap * 2 : 32;
		struct nw_header *h = realloc(r->headers, cap * sizeof *h);

		if (h == NULL)
			return -1;
		r->headers = h;
		r->headers_cap = cap;
	}
	r->headers[r->nheaders].name = name;
	r->headers[r->nheaders].value = value;
	r->nheaders++;
	return 0;
}

static int
parse_content_length(struct nw_request *r, const char *v, size_t n)
{
	int64_t cl = 0;
	size_t i;

	if (n == 0 || n > 18)
		return fail(r, 400);
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return fail(r, 400);
		cl = cl * 10 + (v[i] - '0');
	}
	if (r->content_length >= 0 && r->content_length != cl)
		return fail(r, 400);
	r->content_length = cl;
	return NW_PARSE_DONE;
}

/* Checks the complete head: request line, then one header per line. */
static int
parse_head(struct nw_request *r, const char *buf, size_t start)
{
	const char *p = buf + start;
	const char *end = buf + r->head_len - 2; /* the final CR LF */
	struct framing f = {0, 0, false, false};
	bool te_seen = false;
	unsigned hosts = 0;
	const char *lf;

	lf = memchr(p, '\n', (size_t)(end + 2 - p));
	if (parse_request_line(r, buf, p, lf - 1) < 0)
		return NW_PARSE_ERROR;
	for (p = lf + 1; p < end; p = lf + 1) {
		const char *e, *n, *ne, *v, *ve;

		lf = memchr(p, '\n', (size_t)(end + 2 - p));
		e = lf - 1;
		if (*p == ' ' || *p == '\t')
			return fail(r, 400); /* obs-fold */
		for (n = p; p < e && nw_tchar[(unsigned char)*p]; p++)
			;
		/* no whitespace before the colon: RFC 9112 5.1 */
		if (p == n || p == e || *p != ':')
			return fail(r, 400);
		ne = p;
		for (v = p + 1; v < e && (*v == ' ' || *v == '\t'); v++)
			;
		for (ve = e; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
			;
		for (p = v; p < ve; p++)
			if (!is_value_char((unsigned char)*p))
				return fail(r, 400);
		if (add_header(r, span(buf, n, ne), span(buf, v, ve)) < 0)
			return fail(r, 500);

		switch (ne - n) {
		case 14:
			if (strncasecmp(n, "content-length", 14) == 0 &&
			    parse_content_length(r, v, (size_t)(ve - v)) < 0)
				return NW_PARSE_ERROR;
			break;
		case 17:
			if (strncasecmp(n, "transfer-encoding", 17) == 0) {
				te_seen = true;
				each_token(v, ve, te_token, &f);
			}
			break;
		case 10:
			if (strncasecmp(n, "connection", 10) == 0)
				each_token(v, ve, connection_token, &f);
			break;
		case 4:
			/* RFC 9112 3.2: one valid Host, or a 400 */
			if (strncasecmp(n, "host", 4) == 0 &&
			    (++hosts > 1 || !is_host_value(v, ve)))
				return fail(r, 400);
			break;
		case 6:
			if (strncasecmp(n, "expect", 6) == 0 && ve - v == 12 &&
			    strncasecmp(v, "100-continue", 12) == 0)
				r->expect_continue = r->minor >= 1;
			break;
		}
	}

	/* HTTP/1.0 predates Host: only 1.1 must send it */
	if (hosts == 0 && r->minor >= 1)
		return fail(r, 400);
	if (te_seen) {
		/*
		 * Only "chunked", once: any other coding cannot be decoded for
		 * the app, and TE with Content-Length (or in HTTP/1.0) is how
		 * requests get smuggled past a proxy.
		 */
		if (f.chunked != 1 || f.other != 0 || r->content_length >= 0 ||
		    r->minor == 0)
			return fail(r, 400);
		r->chunked = true;
	}
	r->keep_alive = r->minor >= 1 ? !f.close : f.keep_alive && !f.close;
	return NW_PARSE_DONE;
}

/* Whether an incomplete request line can still become a valid one. */
static bool
method_prefix_ok(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == ' ')
			return i > 0;
		if (!nw_tchar[(unsigned char)p[i]] &&
		    !(p[i] == '\r' && i == n - 1))
			return false;
	}
	return true;
}

int
nw_request_parse(struct nw_request *r, const char *buf, size_t len,
    const struct nw_limits *lim)
{
	size_t line_max = lim->request_line ? lim->request_line : HARD_LINE_MAX;
	size_t field_max = lim->field_size ? lim->field_size : HARD_LINE_MAX;
	size_t fields_max = lim->fields ? lim->fields : HARD_FIELDS_MAX;
	size_t partial;

	/*
	 * Lines must end in CR LF: a bare LF is rejected rather than
	 * tolerated, as gunicorn does, because a proxy in front may split
	 * lines differently and that disagreement is a smuggling vector.
	 */
	while (r->scan < len) {
		const char *lf = memchr(buf + r->scan, '\n', len - r->scan);
		size_t at, linelen;

		if (lf == NULL) {
			r->scan = len;
			break;
		}
		at = (size_t)(lf - buf);
		if (at == r->line_start || buf[at - 1] != '\r')
			return fail(r, 400);
		linelen = at - 1 - r->line_start;
		r->scan = at + 1;
		if (linelen == 0) {
			if (r->nlines == 0) {
				/* RFC 9112 2.2: ignore CR LF before a request
				 */
				if (++r->skipped > MAX_SKIPPED_LINES)
					return fail(r, 400);
				r->line_start = at + 1;
				continue;
			}
			r->head_len = at + 1;
			r->nheaders = 0;
			return parse_head(r, buf, r->line.off);
		}
		if (r->nlines == 0 ? linelen > line_max : linelen > field_max)
			return fail(r, r->nlines == 0 ? 414 : 431);
		if (r->nlines == 0)
			r->line.off = (uint32_t)r->line_start;
		if (r->nlines++ > fields_max)
			return fail(r, 431);
		r->line_start = at + 1;
	}

	partial = len - r->line_start;
	if (r->nlines == 0 && partial > line_max + 1)
		return fail(r, 414);
	if (r->nlines == 0 && !method_prefix_ok(buf + r->line_start, partial))
		return fail(r, 400); /* e.g. a TLS hello: no need to wait */
	if (r->nlines > 0 && partial > field_max + 1)
		return fail(r, 431);
	if (len > HARD_HEAD_MAX)
		return fail(r, 431);
	return NW_PARSE_AGAIN;
}

const struct nw_header *
nw_request_header(const struct nw_request *r, const char *buf, const char *name,
    size_t namelen)
{
	size_t i;

	for (i = 0; i < r->nheaders; i++) {
		const struct nw_header *h = &r->headers[i];

		if (h->name.len == namelen &&
		    strncasecmp(buf + h->name.off, name, namelen) == 0)
			return h;
	}
	return NULL;
}

enum {
	CH_SIZE,      /* hex digits of the chunk size */
	CH_EXT_START, /* after ';': BWS, then an extension's name */
	CH_EXT,       /* the rest of an extension, up to ';' or CR */
	CH_EXT_QUOTED, /* inside a quoted extension value */
	CH_EXT_ESCAPE, /* after a backslash in one */
	CH_SIZE_LF,   /* LF after the size line */
	CH_DATA,
	CH_DATA_CR, /* CR LF after the data */
	CH_DATA_LF,
	CH_TRAILER,       /* start of a trailer line, or the final CR LF */
	CH_TRAILER_NAME,  /* a trailer's name, up to its colon */
	CH_TRAILER_VALUE, /* its value, up to CR */
	CH_TRAILER_LF,
	CH_FINAL_LF,
	CH_DONE,
};

void
nw_chunked_init(struct nw_chunked *c)
{
	memset(c, 0, sizeof *c);
	c->state = CH_SIZE;
}

/*
 * chunk = chunk-size *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] )
 * CRLF data CRLF, and after the last chunk the trailer fields, each
 * "name: value" as strictly as header fields (no obs-fold, a token for a
 * name, no whitespace before the colon). Extensions and trailers are read
 * and dropped. Returns the bytes consumed, -1 on bad framing.
 */
ssize_t
nw_chunked_decode(struct nw_chunked *c, char *data, size_t *len, bool *done)
{
	size_t n = *len, i = 0, out = 0;

	*done = false;
	while (i < n) {
		unsigned char ch = (unsigned char)data[i];
		int h;

		switch (c->state) {
		case CH_SIZE:
			if ((h = hexval(ch)) >= 0) {
				if (++c->ndigits > 15)
					return -1; /* overflow, or absurd */
				c->size = c->size * 16 + (uint64_t)h;
			} else if (c->ndigits == 0) {
				return -1;
			} else if (ch == ';') {
				c->state = CH_EXT_START;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else {
				return -1;
			}
			break;
		case CH_EXT_START:
			/* "5;" and "5;=x" name nothing: a 400, as elsewhere */
			if (ch == ' ' || ch == '\t')
				break;
			if (!nw_tchar[ch])
				return -1;
			c->state = CH_EXT;
			break;
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (ch == ';')
				c->state = CH_EXT_START;
			else if (ch == '"')
				c->state = CH_EXT_QUOTED;
			else if (!is_value_char(ch))
				return -1;
			break;
		case CH_EXT_QUOTED:
			if (ch == '"')
				c->state = CH_EXT;
			else if (ch == '\\')
				c->state = CH_EXT_ESCAPE;
			else if (!is_value_char(ch))
				return -1;
			break;
		case CH_EXT_ESCAPE:
			if (!is_value_char(ch))
				return -1;
			c->state = CH_EXT_QUOTED;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return -1;
			i++;
			c->line = 0;
			c->ndigits = 0;
			c->state = c->size ? CH_DATA : CH_TRAILER;
			continue;
		case CH_DATA: {
			size_t take = n - i;

			if (take > c->size)
				take = (size_t)c->size;
			memmove(data + out, data + i, take);
			out += take;
			i += take;
			c->size -= take;
			if (c->size == 0)
				c->state = CH_DATA_CR;
			continue;
		}
		case CH_DATA_CR:
			if (ch != '\r')
				return -1;
			i++;
			c->state = CH_DATA_LF;
			continue;
		case CH_DATA_LF:
			if (ch != '\n')
				return -1;
			i++;
			c->state = CH_SIZE;
			continue;
		case CH_TRAILER:
			if (ch == '\r') {
				c->state = CH_FINAL_LF;
				i++;
				continue;
			}
			/* obs-fold, or a line that is no field: a 400 */
			if (!nw_tchar[ch])
				return -1;
			c->state = CH_TRAILER_NAME;
			continue;
		case CH_TRAILER_NAME:
			if (ch == ':')
				c->state = CH_TRAILER_VALUE;
			else if (!nw_tchar[ch])
				return -1;
			if (++c->trailers > TRAILERS_MAX)
				return -1;
			i++;
			continue;
		case CH_TRAILER_VALUE:
			if (ch == '\r')
				c->state = CH_TRAILER_LF;
			else if (!is_value_char(ch))
				return -1;
			if (++c->trailers > TRAILERS_MAX)
				return -1;
			i++;
			continue;
		case CH_TRAILER_LF:
			if (ch != '\n')
				return -1;
			i++;
			c->state = CH_TRAILER;
			continue;
		case CH_FINAL_LF:
			if (ch != '\n')
				return -1;
			i++;
			c->state = CH_DONE;
			*len = out;
			*done = true;
			return (ssize_t)i;
		default:
			*len = out;
			*done = true;
			return (ssize_t)i;
		}
		/* the size line's states */
		if (++c->line > CHUNK_LINE_MAX)
			return -1;
		i++;
	}
	*len = out;
	return (ssize_t)i;
}

size_t
nw_percent_decode(const char *p, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		int hi, lo;

		if (p[i] == '%' && i + 2 < n &&
		    (hi = hexval((unsigned char)p[i + 1])) >= 0 &&
		    (lo = hexval((unsigned char)p[i + 2])) >= 0) {
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[o++] = p[i];
		}
	}
	return o;
}

int
nw_path_decode(struct nw_buf *scratch, const char **p, size_t *n)
{
	if (memchr(*p, '%', *n) == NULL)
		return 0;
	if (nw_buf_reserve(scratch, *n) < 0)
		return -1;
	*n = nw_percent_decode(*p, *n, scratch->data);
	*p = scratch->data;
	return 0;
}
