/*
 * environ.c: the WSGI environ of a request, from its parsed head.
 *
 * Keys are interned once and short header values cached by content, as the
 * same few come with every request; a listener's template (engine's
 * listener, tmpl) holds the keys that never change. The peer's address and
 * whether it may claim HTTPS are the engine's (nw_conn_describe_peer).
 */
#include <string.h>
#include <strings.h>

#include "wsgi/wsgi.h"

/* Interned environ keys and constant values. */
static PyObject *k_REQUEST_METHOD, *k_SCRIPT_NAME, *k_PATH_INFO,
    *k_QUERY_STRING, *k_RAW_URI, *k_CONTENT_TYPE, *k_CONTENT_LENGTH,
    *k_SERVER_NAME, *k_SERVER_PORT, *k_SERVER_PROTOCOL, *k_REMOTE_ADDR,
    *k_REMOTE_PORT, *k_wsgi_version, *k_wsgi_url_scheme, *k_wsgi_input,
    *k_wsgi_errors, *k_wsgi_multithread, *k_wsgi_multiprocess, *k_wsgi_run_once,
    *k_wsgi_file_wrapper, *k_wsgi_input_terminated, *k_x_forwarded_proto,
    *k_x_forwarded_protocol, *k_x_forwarded_ssl, *v_http, *v_https, *v_http10,
    *v_http11, *v_empty;

static const struct {
	PyObject **p;
	const char *s;
} interned[] = {
    {&k_REQUEST_METHOD, "REQUEST_METHOD"},
    {&k_SCRIPT_NAME, "SCRIPT_NAME"},
    {&k_PATH_INFO, "PATH_INFO"},
    {&k_QUERY_STRING, "QUERY_STRING"},
    {&k_RAW_URI, "RAW_URI"},
    {&k_CONTENT_TYPE, "CONTENT_TYPE"},
    {&k_CONTENT_LENGTH, "CONTENT_LENGTH"},
    {&k_SERVER_NAME, "SERVER_NAME"},
    {&k_SERVER_PORT, "SERVER_PORT"},
    {&k_SERVER_PROTOCOL, "SERVER_PROTOCOL"},
    {&k_REMOTE_ADDR, "REMOTE_ADDR"},
    {&k_REMOTE_PORT, "REMOTE_PORT"},
    {&k_wsgi_version, "wsgi.version"},
    {&k_wsgi_url_scheme, "wsgi.url_scheme"},
    {&k_wsgi_input, "wsgi.input"},
    {&k_wsgi_errors, "wsgi.errors"},
    {&k_wsgi_multithread, "wsgi.multithread"},
    {&k_wsgi_multiprocess, "wsgi.multiprocess"},
    {&k_wsgi_run_once, "wsgi.run_once"},
    {&k_wsgi_file_wrapper, "wsgi.file_wrapper"},
    {&k_wsgi_input_terminated, "wsgi.input_terminated"},
    {&k_x_forwarded_proto, "HTTP_X_FORWARDED_PROTO"},
    {&k_x_forwarded_protocol, "HTTP_X_FORWARDED_PROTOCOL"},
    {&k_x_forwarded_ssl, "HTTP_X_FORWARDED_SSL"},
    {&v_http, "http"},
    {&v_https, "https"},
    {&v_http10, "HTTP/1.0"},
    {&v_http11, "HTTP/1.1"},
    {&v_empty, ""},
};


/*
 * HTTP_* keys by header name, and short header values by content: both
 * repeat from request to request, and a hit saves building a str.
 */
#define KEYCACHE_SIZE 256
#define KEYCACHE_NAME 48
struct keycache_entry {
	uint32_t hash;
	uint8_t len;
	char name[KEYCACHE_NAME]; /* lowercased */
	PyObject *key;            /* NULL: the header is dropped */
};
static struct keycache_entry keycache[KEYCACHE_SIZE];

#define VALCACHE_SIZE 512
#define VALCACHE_MAX 64
struct valcache_entry {
	uint8_t len;
	char bytes[VALCACHE_MAX];
	PyObject *str;
};
static struct valcache_entry valcache[VALCACHE_SIZE];

/* Environ */

static PyObject *
latin1_str(const char *p, size_t n)
{
	struct valcache_entry *e;
	uint32_t h;

	if (n == 0) {
		Py_INCREF(v_empty);
		return v_empty;
	}
	if (n > VALCACHE_MAX)
		return PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
	h = nw_py_hash(p, n);
	e = &valcache[h & (VALCACHE_SIZE - 1)];
	if (e->str == NULL || e->len != n || memcmp(e->bytes, p, n) != 0) {
		PyObject *s = PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);

		if (s == NULL)
			return NULL;
		Py_XDECREF(e->str);
		e->str = s;
		e->len = (uint8_t)n;
		memcpy(e->bytes, p, n);
	}
	Py_INCREF(e->str);
	return e->str;
}

static PyObject *
method_str(const char *p, size_t n)
{
	PyObject *m = nw_py_method(p, n);

	return m ? m : latin1_str(p, n);
}

/* PATH_INFO: percent-decoded, as latin-1, SCRIPT_NAME taken off. */
static PyObject *
path_info(struct nw_wsgi *s, const char *p, size_t n)
{
	if (nw_path_decode(&s->scratch, &p, &n) < 0)
		return PyErr_NoMemory();
	if (s->script_name_len && n >= s->script_name_len &&
	    memcmp(p, s->script_name_b, s->script_name_len) == 0) {
		p += s->script_name_len;
		n -= s->script_name_len;
	}
	return latin1_str(p, n);
}

/* The environ key of a header (a new reference); NULL, no error: drop. */
static PyObject *
header_key(const char *name, size_t len)
{
	struct keycache_entry *e = NULL;
	char lower[KEYCACHE_NAME];
	PyObject *key = NULL;
	uint32_t h = 0;
	size_t i;

	if (len < KEYCACHE_NAME) {
		for (i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)name[i];

			lower[i] =
			    (char)(ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
		}
		h = nw_py_hash(lower, len);
		e = &keycache[h & (KEYCACHE_SIZE - 1)];
		if (e->len == len && e->hash == h &&
		    memcmp(e->name, lower, len) == 0) {
			Py_XINCREF(e->key);
			return e->key;
		}
	}

	if (len == 12 && strncasecmp(name, "content-type", 12) == 0) {
		key = k_CONTENT_TYPE;
		Py_INCREF(key);
	} else if (len == 14 && strncasecmp(name, "content-length", 14) == 0) {
		key = k_CONTENT_LENGTH;
		Py_INCREF(key);
	} else if (memchr(name, '_', len) == NULL) {
		/* "X_Forwarded_For" could pose as "X-Forwarded-For": dropped */
		char *k = PyMem_Malloc(len + 5);

		if (k == NULL) {
			PyErr_NoMemory();
			return NULL;
		}
		memcpy(k, "HTTP_", 5);
		for (i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)name[i];

			k[5 + i] = ch == '-'
			    ? '_'
			    : (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
		}
		key = PyUnicode_FromStringAndSize(k, (Py_ssize_t)len + 5);
		PyMem_Free(k);
		if (key == NULL)
			return NULL;
		PyUnicode_InternInPlace(&key);
	}
	if (e == NULL)
		return key; /* too long to cache */
	Py_XDECREF(e->key);
	Py_XINCREF(key);
	e->key = key;
	e->hash = h;
	e->len = (uint8_t)len;
	memcpy(e->name, lower, len);
	return key;
}

/* REMOTE_ADDR and REMOTE_PORT, made once per connection. */
static int
remote(struct nw_conn *c)
{
	struct nw_wsgi_conn *wc = NW_WSGI_CONN(c);
	char digits[8];

	if (wc->remote_addr != NULL)
		return 0;
	if ((wc->remote_addr = latin1_str(c->host, strlen(c->host))) == NULL)
		return -1;
	if (c->port) {
		/* by hand: printf costs, once per connection */
		size_t n = 0, i;
		unsigned v = (unsigned)c->port;

		do {
			digits[n++] = (char)('0' + v % 10);
			v /= 10;
		} while (v != 0);
		for (i = 0; i < n / 2; i++) {
			char t = digits[i];

			digits[i] = digits[n - 1 - i];
			digits[n - 1 - i] = t;
		}
		wc->remote_port =
		    PyUnicode_FromStringAndSize(digits, (Py_ssize_t)n);
		if (wc->remote_port == NULL)
			return -1;
	}
	return 0;
}

PyObject *
nw_wsgi_environ(struct nw_wsgi *s, struct nw_conn *c, PyObject *input)
{
	const char *buf = c->in.data + c->rpos;
	struct nw_request *r = &c->req;
	struct nw_wsgi_conn *wc = NW_WSGI_CONN(c);
	PyObject *env;
	size_t i;

	if (remote(c) < 0)
		return NULL;
	if ((env = PyDict_Copy((PyObject *)c->listener->tmpl)) == NULL)
		return NULL;
	if (nw_py_set_new(env, k_REQUEST_METHOD,
	        method_str(buf + r->method.off, r->method.len)) < 0 ||
	    nw_py_set_new(env, k_PATH_INFO,
	        path_info(s, buf + r->path.off, r->path.len)) < 0 ||
	    nw_py_set_new(env, k_QUERY_STRING,
	        latin1_str(buf + r->query.off, r->query.len)) < 0 ||
	    nw_py_set_new(env, k_RAW_URI,
	        latin1_str(buf + r->target.off, r->target.len)) < 0 ||
	    PyDict_SetItem(
	        env, k_SERVER_PROTOCOL, r->minor ? v_http11 : v_http10) < 0 ||
	    PyDict_SetItem(env, k_REMOTE_ADDR, wc->remote_addr) < 0 ||
	    (wc->remote_port &&
	        PyDict_SetItem(env, k_REMOTE_PORT, wc->remote_port) < 0) ||
	    PyDict_SetItem(env, k_wsgi_input, input) < 0)
		goto fail;

	for (i = 0; i < r->nheaders; i++) {
		const struct nw_header *h = &r->headers[i];
		PyObject *key, *value, *old;
		int rc;

		key = header_key(buf + h->name.off, h->name.len);
		if (key == NULL) {
			if (PyErr_Occurred())
				goto fail;
			continue;
		}
		value = latin1_str(buf + h->value.off, h->value.len);
		if (value == NULL) {
			Py_DECREF(key);
			goto fail;
		}
		old = PyDict_GetItem(env, key);
		if (old != NULL) {
			PyObject *joined;

			if (key == k_CONTENT_LENGTH) {
				/* equal, or the parser had rejected them */
				Py_DECREF(value);
				Py_DECREF(key);
				continue;
			}
			/* repeated headers are joined with "," (gunicorn) */
			joined = PyUnicode_FromFormat("%U,%U", old, value);
			Py_DECREF(value);
			value = joined;
		}
		rc = nw_py_set_new(env, key, value);
		if (rc == 0 && c->trusted &&
		    nw_engine_claims_https(c->engine, buf + h->name.off,
		        h->name.len, buf + h->value.off, h->value.len))
			rc = PyDict_SetItem(env, k_wsgi_url_scheme, v_https);
		Py_DECREF(key);
		if (rc < 0)
			goto fail;
	}
	if (r->chunked) {
		/* decoded already: tell apps that ignore input_terminated */
		PyObject *cl = PyUnicode_FromFormat(
		    "%llu", (unsigned long long)c->body_size);

		if (nw_py_set_new(env, k_CONTENT_LENGTH, cl) < 0)
			goto fail;
	}
	return env;
fail:
	Py_DECREF(env);
	return NULL;
}

PyObject *
nw_wsgi_base_environ(struct nw_wsgi *s, PyObject *server_name,
    PyObject *server_port, bool tls)
{
	PyObject *env = PyDict_New();
	PyObject *version = Py_BuildValue("(ii)", 1, 0);

	if (env == NULL || version == NULL)
		goto fail;
	if (PyDict_SetItem(env, k_wsgi_version, version) < 0 ||
	    PyDict_SetItem(env, k_wsgi_url_scheme, tls ? v_https : v_http) < 0 ||
	    PyDict_SetItem(env, k_wsgi_errors, s->errors) < 0 ||
	    PyDict_SetItem(env, k_wsgi_multithread,
	        s->multithread ? Py_True : Py_False) < 0 ||
	    PyDict_SetItem(env, k_wsgi_multiprocess, Py_True) < 0 ||
	    PyDict_SetItem(env, k_wsgi_run_once, Py_False) < 0 ||
	    PyDict_SetItem(env, k_wsgi_file_wrapper, nw_filewrapper_type) < 0 ||
	    PyDict_SetItem(env, k_wsgi_input_terminated, Py_True) < 0 ||
	    PyDict_SetItem(env, k_SCRIPT_NAME, s->script_name) < 0 ||
	    PyDict_SetItem(env, k_SERVER_NAME, server_name) < 0 ||
	    PyDict_SetItem(env, k_SERVER_PORT, server_port) < 0)
		goto fail;
	Py_DECREF(version);
	return env;
fail:
	Py_XDECREF(env);
	Py_XDECREF(version);
	return NULL;
}

/* The keys and values, interned once. */
int
nw_wsgi_environ_init(void)
{
	size_t i;

	for (i = 0; i < sizeof interned / sizeof interned[0]; i++)
		if ((*interned[i].p =
		            PyUnicode_InternFromString(interned[i].s)) == NULL)
			return -1;
	return nw_py_methods_init();
}
