/*
 * front.c: trusted address lists and the PROXY protocol (v1 text, v2
 * binary), as gunicorn's forwarded_allow_ips, proxy_allow_ips and
 * proxy_protocol use them.
 *
 * Both are pure functions of their input: the engine decides, per accepted
 * connection, whether the peer may send a PROXY header (and must: a listed
 * peer that sends none is refused, as gunicorn refuses it) and whether it
 * may claim HTTPS with a secure-scheme header.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/front.h"

/* ---- address lists ---- */

static int
net_parse(const char *s, size_t len, struct nw_ipnet *net)
{
	char buf[64], *slash;
	long prefix;

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';
	memset(net, 0, sizeof *net);
	if (inet_pton(AF_INET, buf, net->addr) == 1) {
		net->family = AF_INET;
		net->prefix = 32;
	} else if (inet_pton(AF_INET6, buf, net->addr) == 1) {
		net->family = AF_INET6;
		net->prefix = 128;
	} else {
		return -1;
	}
	if (slash != NULL) {
		char *end;

		prefix = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || prefix < 0 ||
		    prefix > net->prefix)
			return -1;
		net->prefix = (int)prefix;
	}
	return 0;
}

int
nw_iplist_parse(struct nw_iplist *l, const char *s, char *why, size_t whylen)
{
	const char *p = s, *end;
	size_t len;

	memset(l, 0, sizeof *l);
	while (*p != '\0') {
		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		for (end = p; *end != '\0' && *end != ','; end++)
			;
		len = (size_t)(end - p);
		while (len > 0 && isspace((unsigned char)p[len - 1]))
			len--;
		if (len == 1 && p[0] == '*') {
			l->any = true;
		} else if (len == 4 && strncmp(p, "unix", 4) == 0) {
			l->unix_ok = true;
		} else {
			struct nw_ipnet *grown = realloc(l->nets,
			    (l->n + 1) * sizeof *grown);

			if (grown == NULL) {
				snprintf(why, whylen, "out of memory");
				goto fail;
			}
			l->nets = grown;
			if (net_parse(p, len, &l->nets[l->n]) < 0) {
				snprintf(why, whylen, "'%.*s' is not an IP "
				    "address, a network (10.0.0.0/8) or *",
				    (int)len, p);
				goto fail;
			}
			l->n++;
		}
		p = end;
	}
	return 0;
fail:
	nw_iplist_free(l);
	return -1;
}

void
nw_iplist_free(struct nw_iplist *l)
{
	free(l->nets);
	memset(l, 0, sizeof *l);
}

static bool
net_match(const struct nw_ipnet *net, const unsigned char *addr)
{
	int full = net->prefix / 8, rest = net->prefix % 8;

	if (memcmp(net->addr, addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((net->addr[full] ^ addr[full]) & (0xff << (8 - rest))) == 0;
}

bool
nw_iplist_match(const struct nw_iplist *l,
    const struct sockaddr_storage *peer)
{
	const unsigned char *addr;
	unsigned char mapped[4];
	int family = peer->ss_family;

	if (l->any)
		return true;
	if (family == AF_UNIX)
		return l->unix_ok;
	if (family == AF_INET) {
		addr = (const unsigned char *)&((const struct sockaddr_in *)
		    peer)->sin_addr;
	} else if (family == AF_INET6) {
		addr = ((const struct sockaddr_in6 *)peer)->sin6_addr.s6_addr;
		/* ::ffff:127.0.0.1 is 127.0.0.1 */
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr)) {
			memcpy(mapped, addr + 12, 4);
			addr = mapped;
			family = AF_INET;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < l->n; i++)
		if (l->nets[i].family == family && net_match(&l->nets[i], addr))
			return true;
	return false;
}

/* ---- secure_scheme_headers ---- */

static size_t
trim(const char **p, size_t n)
{
	while (n > 0 && isspace((unsigned char)**p)) {
		(*p)++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)(*p)[n - 1]))
		n--;
	return n;
}

/* "NAME=value, NAME=value" (what gunicorn's dict becomes in an INI). */
int
nw_scheme_headers_parse(struct nw_scheme_headers *t, const char *s,
    char *why, size_t whylen)
{
	const char *p = s, *end, *eq, *name, *value;
	size_t nl, vl;

	memset(t, 0, sizeof *t);
	while (*p != '\0') {
		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		for (end = p; *end != '\0' && *end != ','; end++)
			;
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq == NULL)
			eq = memchr(p, ':', (size_t)(end - p));
		name = p;
		value = eq ? eq + 1 : end;
		nl = trim(&name, (size_t)((eq ? eq : end) - p));
		vl = trim(&value, (size_t)(end - value));
		if (eq == NULL || nl == 0 || vl == 0 ||
		    nl >= sizeof t->v->name || vl >= sizeof t->v->value) {
			snprintf(why, whylen, "'%.*s' is not HEADER=value",
			    (int)(end - p), p);
			nw_scheme_headers_free(t);
			return -1;
		}
		struct nw_scheme_header *grown = realloc(t->v,
		    (t->n + 1) * sizeof *grown);

		if (grown == NULL) {
			snprintf(why, whylen, "out of memory");
			nw_scheme_headers_free(t);
			return -1;
		}
		t->v = grown;
		memcpy(grown[t->n].name, name, nl);
		grown[t->n].namelen = nl;
		memcpy(grown[t->n].value, value, vl);
		grown[t->n].valuelen = vl;
		t->n++;
		p = end;
	}
	return 0;
}

void
nw_scheme_headers_free(struct nw_scheme_headers *t)
{
	free(t->v);
	memset(t, 0, sizeof *t);
}

bool
nw_scheme_headers_claim(const struct nw_scheme_headers *t, const char *name,
    size_t namelen, const char *value, size_t valuelen)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct nw_scheme_header *h = &t->v[i];

		if (h->namelen == namelen &&
		    strncasecmp(h->name, name, namelen) == 0)
			return h->valuelen == valuelen &&
			    strncasecmp(h->value, value, valuelen) == 0;
	}
	return false;
}

/* ---- the PROXY protocol ---- */

static const char v2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";

/* "PROXY TCP4 SRC DST SPORT DPORT\r\n", at most 107 bytes. */
static int
parse_v1(const char *buf, size_t len, struct nw_proxy_info *out)
{
	char line[108], proto[8], src[64], dst[64];
	const char *crlf = memchr(buf, '\n', len < 107 ? len : 107);
	unsigned sport, dport;
	unsigned char tmp[16];
	size_t n;
	int used = 0;

	if (crlf == NULL)
		return len >= 107 ? NW_PROXY_INVALID : NW_PROXY_AGAIN;
	n = (size_t)(crlf - buf);
	if (n == 0 || buf[n - 1] != '\r')
		return NW_PROXY_INVALID;
	memcpy(line, buf, n - 1);
	line[n - 1] = '\0';
	memset(out, 0, sizeof *out);
	if (strncmp(line, "PROXY UNKNOWN", 13) == 0 &&
	    (line[13] == '\0' || line[13] == ' ')) {
		out->local = true;
		return (int)n + 1;
	}
	if (sscanf(line, "PROXY %7s %63s %63s %u %u%n", proto, src, dst,
	    &sport, &dport, &used) != 5 || line[used] != '\0' ||
	    sport > 65535 || dport > 65535)
		return NW_PROXY_INVALID;
	if (strcmp(proto, "TCP4") == 0)
		out->family = AF_INET;
	else if (strcmp(proto, "TCP6") == 0)
		out->family = AF_INET6;
	else
		return NW_PROXY_INVALID;
	if (inet_pton(out->family, src, tmp) != 1 ||
	    inet_pton(out->family, dst, tmp) != 1)
		return NW_PROXY_INVALID;
	snprintf(out->src, sizeof out->src, "%s", src);
	snprintf(out->dst, sizeof out->dst, "%s", dst);
	out->src_port = (int)sport;
	out->dst_port = (int)dport;
	return (int)n + 1;
}

static int
parse_v2(const unsigned char *p, size_t len, struct nw_proxy_info *out)
{
	size_t total;
	int cmd, fam;

	if (len < 16)
		return NW_PROXY_AGAIN;
	if ((p[12] >> 4) != 2)
		return NW_PROXY_INVALID;
	cmd = p[12] & 0x0f;
	fam = p[13];
	total = 16 + ((size_t)p[14] << 8 | p[15]);
	if (len < total)
		return NW_PROXY_AGAIN;
	memset(out, 0, sizeof *out);
	if (cmd == 0) { /* LOCAL: the proxy's own health check */
		out->local = true;
		return (int)total;
	}
	if (cmd != 1)
		return NW_PROXY_INVALID;
	if (fam == 0x11 && total >= 16 + 12) {
		out->family = AF_INET;
		inet_ntop(AF_INET, p + 16, out->src, sizeof out->src);
		inet_ntop(AF_INET, p + 20, out->dst, sizeof out->dst);
		out->src_port = p[24] << 8 | p[25];
		out->dst_port = p[26] << 8 | p[27];
	} else if (fam == 0x21 && total >= 16 + 36) {
		out->family = AF_INET6;
		inet_ntop(AF_INET6, p + 16, out->src, sizeof out->src);
		inet_ntop(AF_INET6, p + 32, out->dst, sizeof out->dst);
		out->src_port = p[48] << 8 | p[49];
		out->dst_port = p[50] << 8 | p[51];
	} else {
		/* UNSPEC, UDP, Unix: nothing an HTTP server can use */
		out->local = true;
	}
	return (int)total;
}

int
nw_proxy_parse(const char *buf, size_t len, struct nw_proxy_info *out)
{
	size_t n = len < 12 ? len : 12;

	if (len == 0)
		return NW_PROXY_AGAIN;
	if (memcmp(buf, v2_sig, n) == 0)
		return n < 12 ? NW_PROXY_AGAIN :
		    parse_v2((const unsigned char *)buf, len, out);
	n = len < 6 ? len : 6;
	if (memcmp(buf, "PROXY ", n) != 0)
		return NW_PROXY_INVALID;
	return n < 6 ? NW_PROXY_AGAIN : parse_v1(buf, len, out);
}
