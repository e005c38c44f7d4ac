/*
 * alogfmt.c: access_log_format, gunicorn's atoms compiled once per worker
 * and rendered in C for each request: h l u t r m U q H s B b f a T D M L p
 * {header}i {header}o {variable}e (see compile_env). "json" asks for one
 * JSON object a line instead.
 *
 * Rendering appends to the access log's buffer and allocates nothing once
 * the buffer has grown. Text that comes from the client is escaped (\xNN
 * for quotes, backslashes and control bytes), as the default format always
 * did, so a line cannot be forged. An atom gunicorn does not have is "-",
 * as in gunicorn.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/front.h"

enum op_kind {
	OP_TEXT,
	OP_HOST, OP_DASH, OP_USER, OP_TIME, OP_LINE, OP_METHOD, OP_PATH,
	OP_QUERY, OP_PROTO, OP_STATUS, OP_BYTES, OP_BYTES_DASH, OP_REFERER,
	OP_AGENT, OP_SECONDS, OP_MICROS, OP_MILLIS, OP_DECIMAL, OP_PID,
	OP_REQ_HEADER, OP_RESP_HEADER, OP_ENV,
};

struct op {
	enum op_kind kind;
	size_t off, len; /* OP_TEXT: in f->text; headers: the lower name */
};

struct nw_alogfmt {
	bool json;
	bool resp_headers;
	char *text;          /* literal parts and header names */
	size_t textlen;
	struct op *ops;
	size_t nops;
	char pid[24];        /* "<1234>" */
};

static const struct {
	const char *name;
	enum op_kind kind;
} atoms[] = {
	{ "h", OP_HOST }, { "l", OP_DASH }, { "u", OP_USER },
	{ "t", OP_TIME }, { "r", OP_LINE }, { "m", OP_METHOD },
	{ "U", OP_PATH }, { "q", OP_QUERY }, { "H", OP_PROTO },
	{ "s", OP_STATUS }, { "B", OP_BYTES }, { "b", OP_BYTES_DASH },
	{ "f", OP_REFERER }, { "a", OP_AGENT }, { "T", OP_SECONDS },
	{ "D", OP_MICROS }, { "M", OP_MILLIS }, { "L", OP_DECIMAL },
	{ "p", OP_PID },
};

static int
push(struct nw_alogfmt *f, enum op_kind kind, const char *s, size_t n,
    bool lower)
{
	struct op *ops = realloc(f->ops, (f->nops + 1) * sizeof *ops);
	char *text = realloc(f->text, f->textlen + n + 1);

	if (ops != NULL)
		f->ops = ops;
	if (text != NULL)
		f->text = text;
	if (ops == NULL || text == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		text[f->textlen + i] = lower ? (char)tolower((unsigned char)s[i])
		    : s[i];
	ops[f->nops].kind = kind;
	ops[f->nops].off = f->textlen;
	ops[f->nops].len = n;
	f->textlen += n;
	f->nops++;
	return 0;
}

/*
 * {NAME}e: gunicorn looks NAME up in the request's WSGI environ. The
 * request's own CGI variables are taken from the request (REQUEST_METHOD,
 * PATH_INFO, QUERY_STRING, SERVER_PROTOCOL, REMOTE_ADDR, CONTENT_TYPE,
 * CONTENT_LENGTH, HTTP_*), in WSGI and ASGI alike; any other name is the
 * worker's environment variable (os.environ, [env]), read once here.
 * Keys an app adds to its environ are not seen: the line is written in C.
 */
static int
compile_env(struct nw_alogfmt *f, const char *name, size_t n)
{
	static const struct {
		const char *name;
		enum op_kind kind;
	} cgi[] = {
		{ "request_method", OP_METHOD }, { "path_info", OP_PATH },
		{ "query_string", OP_QUERY }, { "server_protocol", OP_PROTO },
		{ "remote_addr", OP_HOST },
	};
	char var[256], header[256];
	const char *v;

	for (size_t i = 0; i < sizeof cgi / sizeof *cgi; i++)
		if (strlen(cgi[i].name) == n &&
		    strncasecmp(cgi[i].name, name, n) == 0)
			return push(f, cgi[i].kind, "", 0, false);
	if (n >= sizeof var)
		return push(f, OP_DASH, "", 0, false);
	if ((n > 5 && strncasecmp(name, "http_", 5) == 0) ||
	    (n == 12 && strncasecmp(name, "content_type", 12) == 0) ||
	    (n == 14 && strncasecmp(name, "content_length", 14) == 0)) {
		size_t skip = strncasecmp(name, "http_", 5) == 0 ? 5 : 0;

		for (size_t i = skip; i < n; i++)
			header[i - skip] = name[i] == '_' ? '-' : name[i];
		return push(f, OP_REQ_HEADER, header, n - skip, true);
	}
	memcpy(var, name, n);
	var[n] = '\0';
	if ((v = getenv(var)) == NULL || *v == '\0')
		return push(f, OP_DASH, "", 0, false);
	return push(f, OP_ENV, v, strlen(v), false);
}

/* One %(...)X at p (after the '%'); its length, or 0 if malformed. */
static size_t
compile_atom(struct nw_alogfmt *f, const char *p)
{
	const char *close = strchr(p + 1, ')'), *q;
	size_t n;

	if (p[0] != '(' || close == NULL)
		return 0;
	/* Python's conversion: flags, width, precision, type */
	for (q = close + 1; strchr("#0- +", *q) != NULL && *q != '\0'; q++)
		;
	while (isdigit((unsigned char)*q) || *q == '.')
		q++;
	if (*q == '\0' || strchr("sdirf", *q) == NULL)
		return 0;
	p++;
	n = (size_t)(close - p);
	if (n > 3 && p[0] == '{' && p[n - 2] == '}' && p[n - 1] == 'e') {
		if (compile_env(f, p + 1, n - 3) < 0)
			return 0;
		return (size_t)(q - p) + 2;
	}
	if (n > 3 && p[0] == '{' && p[n - 2] == '}' &&
	    (p[n - 1] == 'i' || p[n - 1] == 'o')) {
		enum op_kind kind = p[n - 1] == 'i' ? OP_REQ_HEADER :
		    OP_RESP_HEADER;

		if (kind == OP_RESP_HEADER)
			f->resp_headers = true;
		if (push(f, kind, p + 1, n - 3, true) < 0)
			return 0;
		return (size_t)(q - p) + 2;
	}
	for (size_t i = 0; i < sizeof atoms / sizeof *atoms; i++)
		if (strlen(atoms[i].name) == n &&
		    strncmp(atoms[i].name, p, n) == 0) {
			if (push(f, atoms[i].kind, "", 0, false) < 0)
				return 0;
			return (size_t)(q - p) + 2;
		}
	if (push(f, OP_DASH, "", 0, false) < 0) /* gunicorn: unknown is - */
		return 0;
	return (size_t)(q - p) + 2;
}

struct nw_alogfmt *
nw_alogfmt_compile(const char *fmt, char *why, size_t whylen)
{
	struct nw_alogfmt *f = calloc(1, sizeof *f);
	const char *p = fmt, *lit;
	size_t n;

	if (f == NULL)
		goto nomem;
	snprintf(f->pid, sizeof f->pid, "<%d>", (int)getpid());
	if (strcmp(fmt, "json") == 0) {
		f->json = true;
		return f;
	}
	while (*p != '\0') {
		for (lit = p; *p != '\0' && *p != '%'; p++)
			;
		if (p > lit && push(f, OP_TEXT, lit, (size_t)(p - lit),
		    false) < 0)
			goto nomem;
		if (*p == '\0')
			break;
		if (p[1] == '%') {
			if (push(f, OP_TEXT, "%", 1, false) < 0)
				goto nomem;
			p += 2;
			continue;
		}
		if ((n = compile_atom(f, p + 1)) == 0) {
			snprintf(why, whylen, "'%.40s' is not a %%(atom)s of "
			    "gunicorn's access log format", p);
			nw_alogfmt_free(f);
			return NULL;
		}
		p += 1 + n;
	}
	if (push(f, OP_TEXT, "\n", 1, false) < 0)
		goto nomem;
	return f;
nomem:
	snprintf(why, whylen, "out of memory");
	nw_alogfmt_free(f);
	return NULL;
}

void
nw_alogfmt_free(struct nw_alogfmt *f)
{
	if (f == NULL)
		return;
	free(f->text);
	free(f->ops);
	free(f);
}

bool
nw_alogfmt_wants_response_headers(const struct nw_alogfmt *f)
{
	return f->resp_headers;
}

/* Client text: quotes, backslashes and control bytes as \xNN. */
static void
put_escaped(struct nw_buf *b, const char *p, size_t n, bool json)
{
	static const char hex[] = "0123456789abcdef";

	if (nw_buf_reserve(b, n * 6) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		char *w = b->data + b->len;

		if (json && (ch < 0x20 || ch >= 0x7f || ch == '"' ||
		    ch == '\\')) {
			memcpy(w, "\\u00", 4);
			w[4] = hex[ch >> 4];
			w[5] = hex[ch & 15];
			b->len += 6;
		} else if (!json && (ch < 0x20 || ch == 0x7f || ch == '"' ||
		    ch == '\\')) {
			w[0] = '\\';
			w[1] = 'x';
			w[2] = hex[ch >> 4];
			w[3] = hex[ch & 15];
			b->len += 4;
		} else {
			*w = (char)ch;
			b->len++;
		}
	}
}

static void
put_span(struct nw_buf *b, const struct nw_alog_entry *e, struct nw_span s,
    bool json)
{
	if (s.len == 0 && !json)
		nw_buf_append(b, "-", 1);
	else
		put_escaped(b, e->buf + s.off, s.len, json);
}

static bool
req_header(const struct nw_alog_entry *e, const char *name, size_t len,
    struct nw_span *out)
{
	const struct nw_header *h = nw_request_header(e->req, e->buf, name,
	    len);

	if (h == NULL || h->value.len == 0)
		return false;
	*out = h->value;
	return true;
}

static void
put_req_header(struct nw_buf *b, const struct nw_alog_entry *e,
    const char *name, size_t len, bool json)
{
	struct nw_span v;

	if (req_header(e, name, len, &v))
		put_escaped(b, e->buf + v.off, v.len, json);
	else if (!json)
		nw_buf_append(b, "-", 1);
}

/* The response's "Name: value\r\n" lines, searched case-insensitively. */
static void
put_resp_header(struct nw_buf *b, const struct nw_alog_entry *e,
    const char *name, size_t len)
{
	const char *p = e->resp_head, *end = p ? p + e->resp_head_len : NULL;

	for (; p != NULL && p < end;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *stop = eol ? eol : end;

		if ((size_t)(stop - p) > len && p[len] == ':' &&
		    strncasecmp(p, name, len) == 0) {
			const char *v = p + len + 1;

			while (v < stop && (*v == ' ' || *v == '\t'))
				v++;
			while (stop > v && (stop[-1] == '\r' ||
			    stop[-1] == ' '))
				stop--;
			put_escaped(b, v, (size_t)(stop - v), false);
			return;
		}
		p = eol ? eol + 1 : end;
	}
	nw_buf_append(b, "-", 1);
}

static int
b64(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* gunicorn's %(u)s: the user of "Authorization: Basic ...", else -. */
static void
put_user(struct nw_buf *b, const struct nw_alog_entry *e, bool json)
{
	char user[256];
	size_t n = 0;
	struct nw_span v;
	const char *p;
	unsigned acc = 0;
	int bits = 0;

	if (!req_header(e, "authorization", 13, &v) || v.len < 7 ||
	    strncasecmp(e->buf + v.off, "basic ", 6) != 0) {
		if (!json)
			nw_buf_append(b, "-", 1);
		return;
	}
	for (p = e->buf + v.off + 6; p < e->buf + v.off + v.len &&
	     n < sizeof user; p++) {
		int d = b64((unsigned char)*p);

		if (d < 0)
			break;
		acc = acc << 6 | (unsigned)d;
		if ((bits += 6) >= 8) {
			bits -= 8;
			user[n] = (char)(acc >> bits & 0xff);
			if (user[n] == ':')
				break;
			n++;
		}
	}
	if (n == 0 && !json)
		nw_buf_append(b, "-", 1);
	else
		put_escaped(b, user, n, json);
}

static void
put_decimal(struct nw_buf *b, int64_t us)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof tmp, "%lld.%06lld",
	    (long long)(us / 1000000), (long long)(us % 1000000));

	nw_buf_append(b, tmp, (size_t)n);
}

static struct nw_span
proto_span(const struct nw_alog_entry *e)
{
	/* The request line ends with the version: "HTTP/1.1". */
	struct nw_span s = e->req->line;

	if (s.len >= 8) {
		s.off += s.len - 8;
		s.len = 8;
	}
	return s;
}

static void
render_json(struct nw_buf *b, const struct nw_alogfmt *f,
    const struct nw_alog_entry *e)
{
	const struct nw_request *r = e->req;

	nw_buf_appendstr(b, "{\"remote_addr\":\"");
	put_escaped(b, e->host, strlen(e->host), true);
	nw_buf_appendstr(b, "\",\"time\":\"");
	if (e->clock->logtime_len > 2)
		nw_buf_append(b, e->clock->logtime + 1,
		    e->clock->logtime_len - 2);
	nw_buf_appendstr(b, "\",\"request\":\"");
	put_span(b, e, r->line, true);
	nw_buf_appendstr(b, "\",\"method\":\"");
	put_span(b, e, r->method, true);
	nw_buf_appendstr(b, "\",\"path\":\"");
	put_span(b, e, r->path, true);
	nw_buf_appendstr(b, "\",\"query\":\"");
	put_span(b, e, r->query, true);
	nw_buf_appendstr(b, "\",\"protocol\":\"");
	put_span(b, e, proto_span(e), true);
	nw_buf_appendstr(b, "\",\"status\":");
	nw_buf_appendu(b, (uint64_t)e->status);
	nw_buf_appendstr(b, ",\"bytes\":");
	nw_buf_appendu(b, e->sent);
	nw_buf_appendstr(b, ",\"duration_us\":");
	nw_buf_appendu(b, e->duration_us > 0 ? (uint64_t)e->duration_us : 0);
	nw_buf_appendstr(b, ",\"user\":\"");
	put_user(b, e, true);
	nw_buf_appendstr(b, "\",\"referer\":\"");
	put_req_header(b, e, "referer", 7, true);
	nw_buf_appendstr(b, "\",\"user_agent\":\"");
	put_req_header(b, e, "user-agent", 10, true);
	nw_buf_appendstr(b, "\",\"pid\":");
	nw_buf_append(b, f->pid + 1, strlen(f->pid) - 2);
	nw_buf_appendstr(b, "}\n");
}

void
nw_alogfmt_render(struct nw_buf *b, const struct nw_alogfmt *f,
    const struct nw_alog_entry *e)
{
	int64_t us = e->duration_us > 0 ? e->duration_us : 0;

	if (f->json) {
		render_json(b, f, e);
		return;
	}
	for (size_t i = 0; i < f->nops; i++) {
		const struct op *op = &f->ops[i];

		switch (op->kind) {
		case OP_TEXT:
			nw_buf_append(b, f->text + op->off, op->len);
			break;
		case OP_HOST:
			nw_buf_appendstr(b, e->host[0] ? e->host : "-");
			break;
		case OP_DASH:
			nw_buf_append(b, "-", 1);
			break;
		case OP_USER:
			put_user(b, e, false);
			break;
		case OP_TIME:
			nw_buf_append(b, e->clock->logtime,
			    e->clock->logtime_len);
			break;
		case OP_LINE:
			put_span(b, e, e->req->line, false);
			break;
		case OP_METHOD:
			put_span(b, e, e->req->method, false);
			break;
		case OP_PATH:
			put_span(b, e, e->req->path, false);
			break;
		case OP_QUERY:
			if (e->req->query.len > 0)
				put_span(b, e, e->req->query, false);
			break;
		case OP_PROTO:
			put_span(b, e, proto_span(e), false);
			break;
		case OP_STATUS:
			nw_buf_appendu(b, (uint64_t)e->status);
			break;
		case OP_BYTES:
		case OP_BYTES_DASH:
			nw_buf_appendu(b, e->sent);
			break;
		case OP_REFERER:
			put_req_header(b, e, "referer", 7, false);
			break;
		case OP_AGENT:
			put_req_header(b, e, "user-agent", 10, false);
			break;
		case OP_SECONDS:
			nw_buf_appendu(b, (uint64_t)(us / 1000000));
			break;
		case OP_MICROS:
			nw_buf_appendu(b, (uint64_t)us);
			break;
		case OP_MILLIS:
			nw_buf_appendu(b, (uint64_t)(us / 1000));
			break;
		case OP_DECIMAL:
			put_decimal(b, us);
			break;
		case OP_PID:
			nw_buf_appendstr(b, f->pid);
			break;
		case OP_REQ_HEADER:
			put_req_header(b, e, f->text + op->off, op->len, false);
			break;
		case OP_RESP_HEADER:
			put_resp_header(b, e, f->text + op->off, op->len);
			break;
		case OP_ENV:
			put_escaped(b, f->text + op->off, op->len, false);
			break;
		}
	}
}
