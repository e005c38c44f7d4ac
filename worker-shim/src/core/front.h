/*
 * front.h: what a server behind a proxy needs, as gunicorn has it: address
 * lists (forwarded_allow_ips, proxy_allow_ips), the PROXY protocol (v1 and
 * v2) and the access log's format (access_log_format's atoms, or JSON).
 *
 * Pure C over bytes and sockaddrs: no Python, no engine state; the engine
 * and the drivers call it, and tests/unit tests it.
 */
#ifndef NW_CORE_FRONT_H
#define NW_CORE_FRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/http.h"

/* ---- address lists: "127.0.0.1,::1,10.0.0.0/8", or "*" ---- */

struct nw_ipnet {
	int family;            /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int prefix;            /* bits */
};

struct nw_iplist {
	bool any;              /* "*" */
	bool unix_ok;          /* Unix-socket peers count as listed */
	struct nw_ipnet *nets;
	size_t n;
};

/* 0, or -1 with why filled in. An empty string lists nothing. */
int nw_iplist_parse(struct nw_iplist *l, const char *s, char *why,
    size_t whylen);
void nw_iplist_free(struct nw_iplist *l);
bool nw_iplist_match(const struct nw_iplist *l,
    const struct sockaddr_storage *peer);

/* ---- secure_scheme_headers: "X-FORWARDED-PROTO=https, ..." ---- */

struct nw_scheme_header {
	char name[64];
	size_t namelen;
	char value[64];
	size_t valuelen;
};

struct nw_scheme_headers {
	struct nw_scheme_header *v;
	size_t n;
};

int nw_scheme_headers_parse(struct nw_scheme_headers *t, const char *s,
    char *why, size_t whylen);
void nw_scheme_headers_free(struct nw_scheme_headers *t);
/* Does this header (from a trusted peer) say the client spoke HTTPS? */
bool nw_scheme_headers_claim(const struct nw_scheme_headers *t,
    const char *name, size_t namelen, const char *value, size_t valuelen);

/* ---- the PROXY protocol ---- */

struct nw_proxy_info {
	bool local;            /* v2 LOCAL or v1 UNKNOWN: keep the peer */
	int family;            /* AF_INET, AF_INET6 */
	char src[64];
	int src_port;
	char dst[64];
	int dst_port;
};

enum {
	NW_PROXY_AGAIN = 0,    /* need more bytes */
	NW_PROXY_INVALID = -1, /* not a PROXY header: close */
};

/* Bytes the header took (> 0), NW_PROXY_AGAIN or NW_PROXY_INVALID. */
int nw_proxy_parse(const char *buf, size_t len, struct nw_proxy_info *out);

/* ---- access_log_format ---- */

struct nw_alogfmt;

/* What one access log line is made of. */
struct nw_alog_entry {
	const char *host;          /* client address, "" for a Unix socket */
	const struct nw_clock *clock;
	const char *buf;           /* the request head */
	const struct nw_request *req;
	int status;
	uint64_t sent;             /* body bytes */
	int64_t duration_us;       /* head parsed to response done */
	const char *resp_head;     /* "Name: value\r\n"..., or NULL */
	size_t resp_head_len;
};

/* "json", or gunicorn's %(atom)s format. NULL with why on error. */
struct nw_alogfmt *nw_alogfmt_compile(const char *fmt, char *why,
    size_t whylen);
void nw_alogfmt_free(struct nw_alogfmt *f);
/* Does the format use response headers (%({name}o)s)? */
bool nw_alogfmt_wants_response_headers(const struct nw_alogfmt *f);
void nw_alogfmt_render(struct nw_buf *b, const struct nw_alogfmt *f,
    const struct nw_alog_entry *e);

#endif
