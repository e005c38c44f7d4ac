/*
 * scope.c: the ASGI scope of a request, from its parsed head.
 *
 * A listener's template holds the keys that never change and None for the
 * others, so a request's scope is a copy whose values are replaced. Header
 * names (lowercased) and short values are cached as bytes objects, as the
 * same few come with every request.
 */
#include <string.h>
#include <strings.h>

#include "asgi/asgi.h"


/* Lowercased header names, and short header values, as bytes. */
#define NAMECACHE_SIZE 256
#define NAMECACHE_MAX 48

static struct {
	uint32_t hash;
	uint8_t len;
	char name[NAMECACHE_MAX]; /* lowercased */
	PyObject *bytes;
} namecache[NAMECACHE_SIZE];

#define VALCACHE_SIZE 512
#define VALCACHE_MAX 64

static struct {
	uint8_t len;
	char data[VALCACHE_MAX];
	PyObject *bytes;
} valcache[VALCACHE_SIZE];

static PyObject *
method_str(const char *p, size_t n)
{
	PyObject *m = nw_py_method(p, n);

	return m ? m : PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
}

/* scope["path"]: percent-decoded UTF-8, root_path taken off. */
static PyObject *
path_str(struct nw_asgi *s, const char *p, size_t n)
{
	if (nw_path_decode(&s->scratch, &p, &n) < 0)
		return PyErr_NoMemory();
	if (s->root_path_len && n >= s->root_path_len &&
	    memcmp(p, s->root_path_b, s->root_path_len) == 0 &&
	    (n == s->root_path_len || p[s->root_path_len] == '/')) {
		p += s->root_path_len;
		n -= s->root_path_len;
	}
	return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "replace");
}

static PyObject *
name_bytes(const char *name, size_t len)
{
	char lower[NAMECACHE_MAX];
	uint32_t h;
	size_t i;
	PyObject *b;
	char *d;

	if (len < NAMECACHE_MAX) {
		for (i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)name[i];

			lower[i] =
			    (char)(ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
		}
		h = nw_py_hash(lower, len);
		i = h & (NAMECACHE_SIZE - 1);
		if (namecache[i].bytes != NULL && namecache[i].hash == h &&
		    namecache[i].len == len &&
		    memcmp(namecache[i].name, lower, len) == 0) {
			Py_INCREF(namecache[i].bytes);
			return namecache[i].bytes;
		}
		b = PyBytes_FromStringAndSize(lower, (Py_ssize_t)len);
		if (b == NULL)
			return NULL;
		Py_XDECREF(namecache[i].bytes);
		Py_INCREF(b);
		namecache[i].bytes = b;
		namecache[i].hash = h;
		namecache[i].len = (uint8_t)len;
		memcpy(namecache[i].name, lower, len);
		return b;
	}
	if ((b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len)) == NULL)
		return NULL;
	d = PyBytes_AsString(b);
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];

		d[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
	}
	return b;
}

static PyObject *
value_bytes(const char *p, size_t n)
{
	size_t i;
	PyObject *b;

	if (n == 0) {
		Py_INCREF(nw_str.empty);
		return nw_str.empty;
	}
	if (n > VALCACHE_MAX)
		return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
	i = nw_py_hash(p, n) & (VALCACHE_SIZE - 1);
	if (valcache[i].bytes == NULL || valcache[i].len != n ||
	    memcmp(valcache[i].data, p, n) != 0) {
		if ((b = PyBytes_FromStringAndSize(p, (Py_ssize_t)n)) == NULL)
			return NULL;
		Py_XDECREF(valcache[i].bytes);
		valcache[i].bytes = b;
		valcache[i].len = (uint8_t)n;
		memcpy(valcache[i].data, p, n);
	}
	Py_INCREF(valcache[i].bytes);
	return valcache[i].bytes;
}

/* scope["client"], made once per connection: (host, port), or None. */
static PyObject *
client_of(struct nw_conn *c)
{
	struct nw_asgi_conn *ac = NW_ASGI_CONN(c);

	if (ac->client != NULL)
		return ac->client;
	if (c->port == 0) {
		Py_INCREF(Py_None);
		ac->client = Py_None;
	} else {
		ac->client = Py_BuildValue("(si)", c->host, c->port);
	}
	return ac->client;
}

/* A request's scope, from its head in c->in (rpos on). */
PyObject *
nw_scope_build(struct nw_asgi *s, struct nw_conn *c)
{
	const char *buf = c->in.data + c->rpos;
	struct nw_request *r = &c->req;
	PyObject *scope, *headers;
	bool https = false;
	size_t i;

	if (client_of(c) == NULL)
		return NULL;
	if ((scope = PyDict_Copy((PyObject *)c->listener->tmpl)) == NULL)
		return NULL;
	if ((headers = PyList_New((Py_ssize_t)r->nheaders)) == NULL)
		goto fail;
	for (i = 0; i < r->nheaders; i++) {
		const struct nw_header *h = &r->headers[i];
		PyObject *name, *value, *pair;

		name = name_bytes(buf + h->name.off, h->name.len);
		value = value_bytes(buf + h->value.off, h->value.len);
		if (name == NULL || value == NULL) {
			Py_XDECREF(name);
			Py_XDECREF(value);
			Py_DECREF(headers);
			goto fail;
		}
		pair = PyTuple_New(2);
		if (pair == NULL) {
			Py_DECREF(name);
			Py_DECREF(value);
			Py_DECREF(headers);
			goto fail;
		}
		PyTuple_SetItem(pair, 0, name);
		PyTuple_SetItem(pair, 1, value);
		PyList_SetItem(headers, (Py_ssize_t)i, pair);
		if (c->trusted && !https &&
		    nw_engine_claims_https(c->engine, buf + h->name.off,
		        h->name.len, buf + h->value.off, h->value.len))
			https = true;
	}
	if (nw_py_set_new(scope, nw_str.headers, headers) < 0 ||
	    PyDict_SetItem(scope, nw_str.http_version,
	        r->minor ? nw_str.v1_1 : nw_str.v1_0) < 0 ||
	    nw_py_set_new(scope, nw_str.method,
	        method_str(buf + r->method.off, r->method.len)) < 0 ||
	    nw_py_set_new(scope, nw_str.path,
	        path_str(s, buf + r->path.off, r->path.len)) < 0 ||
	    nw_py_set_new(scope, nw_str.raw_path,
	        PyBytes_FromStringAndSize(
	            buf + r->path.off, (Py_ssize_t)r->path.len)) < 0 ||
	    nw_py_set_new(scope, nw_str.query_string,
	        r->query.len ? PyBytes_FromStringAndSize(
	                           buf + r->query.off, (Py_ssize_t)r->query.len)
	                     : (Py_INCREF(nw_str.empty), nw_str.empty)) < 0 ||
	    PyDict_SetItem(scope, nw_str.client, NW_ASGI_CONN(c)->client) < 0 ||
	    (https && PyDict_SetItem(scope, nw_str.scheme, nw_str.https) < 0) ||
	    (s->state != NULL &&
	        nw_py_set_new(scope, nw_str.state, PyDict_Copy(s->state)) < 0))
		goto fail;
	return scope;
fail:
	Py_DECREF(scope);
	return NULL;
}

/*
 * The keys that never change for a listener (server is its (host, port)),
 * and None for the others: a copy is then a dict of the right size whose
 * values nw_scope_build only replaces (growing it key by key was a tenth of a
 * hello world's instructions).
 */
PyObject *
nw_scope_template(struct nw_asgi *s, PyObject *server, bool tls)
{
	PyObject *per_request[] = {nw_str.headers, nw_str.http_version,
	    nw_str.method, nw_str.path, nw_str.raw_path, nw_str.query_string,
	    nw_str.client, NULL};
	PyObject *scope = PyDict_New(), *asgi = PyDict_New(), **k;

	if (scope == NULL || asgi == NULL)
		goto fail;
	if (PyDict_SetItem(asgi, nw_str.version, nw_str.v3_0) < 0 ||
	    PyDict_SetItem(asgi, nw_str.spec_version, nw_str.v2_3) < 0 ||
	    PyDict_SetItem(scope, nw_str.type, nw_str.http) < 0 ||
	    PyDict_SetItem(scope, nw_str.asgi, asgi) < 0 ||
	    PyDict_SetItem(scope, nw_str.scheme,
	        tls ? nw_str.https : nw_str.http) < 0 ||
	    PyDict_SetItem(scope, nw_str.server, server) < 0 ||
	    PyDict_SetItem(scope, nw_str.root_path, s->root_path) < 0)
		goto fail;
	for (k = per_request; *k != NULL; k++)
		if (PyDict_SetItem(scope, *k, Py_None) < 0)
			goto fail;
	if (s->state != NULL &&
	    PyDict_SetItem(scope, nw_str.state, Py_None) < 0)
		goto fail;
	Py_DECREF(asgi);
	return scope;
fail:
	Py_XDECREF(scope);
	Py_XDECREF(asgi);
	return NULL;
}

int
nw_scope_init(void)
{
	return nw_py_methods_init();
}
