/*
 * front.c: the engine behind a proxy, with gunicorn's settings: which peers
 * may claim HTTPS (forwarded_allow_ips, secure_scheme_headers), which must
 * start with a PROXY header (proxy_protocol, proxy_allow_ips), and the
 * access log's format (access_log_format).
 *
 * The master hands them over as NARWHAL_* variables of the worker contract
 * (worker-shim/README.md); both drivers call nw_engine_front_setup() once,
 * before start, and the engine applies them per connection and per request.
 * Without the variables, gunicorn's defaults hold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static const char *
env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v != NULL ? v : fallback;
}

int
nw_engine_front_setup(struct nw_engine *e, char *why, size_t whylen)
{
	const char *fmt = getenv("NARWHAL_ACCESS_LOG_FORMAT");
	char sub[200];

	if (nw_iplist_parse(&e->forwarded, env_or(
	    "NARWHAL_FORWARDED_ALLOW_IPS", "127.0.0.1,::1"), sub,
	    sizeof sub) < 0) {
		snprintf(why, whylen, "forwarded_allow_ips: %s", sub);
		return -1;
	}
	if (nw_iplist_parse(&e->proxy_allow, env_or(
	    "NARWHAL_PROXY_ALLOW_IPS", "127.0.0.1,::1"), sub,
	    sizeof sub) < 0) {
		snprintf(why, whylen, "proxy_allow_ips: %s", sub);
		return -1;
	}
	/* A Unix-socket peer is the proxy on this host (gunicorn's rule). */
	e->forwarded.unix_ok = e->proxy_allow.unix_ok = true;
	if (nw_scheme_headers_parse(&e->secure, env_or(
	    "NARWHAL_SECURE_SCHEME_HEADERS", "X-FORWARDED-PROTOCOL=ssl, "
	    "X-FORWARDED-PROTO=https, X-FORWARDED-SSL=on"), sub,
	    sizeof sub) < 0) {
		snprintf(why, whylen, "secure_scheme_headers: %s", sub);
		return -1;
	}
	e->proxy_protocol = atoi(env_or("NARWHAL_PROXY_PROTOCOL", "0"));
	if (fmt != NULL && *fmt != '\0' &&
	    (e->alogfmt = nw_alogfmt_compile(fmt, sub, sizeof sub)) == NULL) {
		snprintf(why, whylen, "access_log_format: %s", sub);
		return -1;
	}
	return 0;
}

void
nw_engine_front_free(struct nw_engine *e)
{
	nw_iplist_free(&e->forwarded);
	nw_iplist_free(&e->proxy_allow);
	nw_scheme_headers_free(&e->secure);
	nw_alogfmt_free(e->alogfmt);
	e->alogfmt = NULL;
}

bool
nw_engine_claims_https(const struct nw_engine *e, const char *name,
    size_t namelen, const char *value, size_t valuelen)
{
	return nw_scheme_headers_claim(&e->secure, name, namelen, value,
	    valuelen);
}

/*
 * A connection from a listed proxy may start with a PROXY header (as in
 * gunicorn, it may also not: the master's health probes send none): parse
 * it from c->in at c->rpos. 1: done (c->host and c->port are the client's
 * when there was one), 0: more bytes needed, -1: a broken PROXY header.
 */
int
nw_conn_proxy_header(struct nw_conn *c)
{
	static const char v2[12] = "\r\n\r\n\0\r\nQUIT\n";
	const char *p = c->in.data + c->rpos;
	size_t len = c->in.len - c->rpos;
	struct nw_proxy_info pi;
	int n;

	if (memcmp(p, "PROXY ", len < 6 ? len : 6) != 0 &&
	    memcmp(p, v2, len < 12 ? len : 12) != 0) {
		c->proxy_pending = false; /* a request, as it came */
		return 1;
	}
	if ((n = nw_proxy_parse(p, len, &pi)) == NW_PROXY_AGAIN)
		return 0;
	if (n == NW_PROXY_INVALID)
		return -1;
	c->rpos += (size_t)n;
	c->proxy_pending = false;
	if (!pi.local) {
		snprintf(c->host, sizeof c->host, "%s", pi.src);
		c->port = pi.src_port;
	}
	return 1;
}
