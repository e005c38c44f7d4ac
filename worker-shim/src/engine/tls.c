/*
 * tls.c: TLS on the public sockets, with OpenSSL, inside the engine's loop.
 *
 * It owns the worker's SSL_CTX (certfile, keyfile, ca_certs, cert_reqs and
 * ciphers, from the master's NARWHAL_* variables), and a connection's TLS:
 * the handshake without blocking, reading into the connection's input,
 * writing its output, close_notify, and the blocking writer of a driver
 * that answers in place. conn.c and output.c call in only where c->ssl is
 * set, so a plain connection never comes here; nothing above the engine
 * sees TLS but wsgi.url_scheme and the ASGI scheme.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "engine/engine.h"

/* OpenSSL's reason for the last failure, in words. */
static const char *
ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : "unknown error";
}

static int
setup_fail(
    SSL_CTX *ctx, char *why, size_t whylen, const char *key, const char *path)
{
	snprintf(why, whylen, "%s %s: %s", key, path, ssl_reason());
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return -1;
}

/* ALPN: HTTP/1.1 when the client offers it (curl and browsers offer h2
 * first); no answer otherwise, and the client goes on with HTTP/1.1. */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h11[] = "\x08http/1.1";

	if (SSL_select_next_proto((unsigned char **)out, outlen, h11,
	        sizeof h11 - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

/*
 * The context every TLS connection of this worker shares, if the master
 * set NARWHAL_CERTFILE; the worker reads the files itself at boot, so a
 * reload's new workers serve a renewed certificate. -1 with why.
 */
int
nw_engine_tls_setup(struct nw_engine *e, char *why, size_t whylen)
{
	const char *cert = getenv("NARWHAL_CERTFILE");
	const char *key = getenv("NARWHAL_KEYFILE");
	const char *ca = getenv("NARWHAL_CA_CERTS");
	const char *ciphers = getenv("NARWHAL_CIPHERS");
	const char *reqs = getenv("NARWHAL_CERT_REQS");
	int cert_reqs = reqs != NULL ? atoi(reqs) : 0;
	SSL_CTX *ctx;

	if (cert == NULL || *cert == '\0')
		return 0;
	if (key == NULL || *key == '\0')
		key =
		    cert; /* Python's load_cert_chain: the key is in certfile */
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		return setup_fail(NULL, why, whylen, "certfile", cert);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A write that waits retries from the output buffer, which moves as
	 * it grows; a client may not renegotiate (a write never needs a
	 * read); idle keep-alive connections give their buffers back. */
	SSL_CTX_set_mode(ctx,
	    SSL_MODE_ENABLE_PARTIAL_WRITE |
	        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	/* one read for what arrived, not two per record (see nw_tls_read) */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_session_id_context(
	    ctx, (const unsigned char *)"narwhal", 7);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		return setup_fail(ctx, why, whylen, "certfile", cert);
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		return setup_fail(ctx, why, whylen, "keyfile", key);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return setup_fail(ctx, why, whylen, "keyfile", key);
	if (ciphers != NULL && *ciphers != '\0' &&
	    SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
		return setup_fail(ctx, why, whylen, "ciphers", ciphers);
	if (ca != NULL && *ca != '\0') {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);

		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
		    names == NULL)
			return setup_fail(ctx, why, whylen, "ca_certs", ca);
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	/* gunicorn's cert_reqs: ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED */
	if (cert_reqs > 0)
		SSL_CTX_set_verify(ctx,
		    SSL_VERIFY_PEER |
		        (cert_reqs >= 2 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
		    NULL);
	e->tls = ctx;
	return 0;
}

void
nw_engine_tls_free(struct nw_engine *e)
{
	SSL_CTX_free(e->tls);
	e->tls = NULL;
}

/* A connection accepted on a TLS listener: the handshake comes first. */
int
nw_tls_accept(struct nw_conn *c)
{
	c->tls_want = 0;
	if ((c->ssl = SSL_new(c->engine->tls)) == NULL ||
	    SSL_set_fd(c->ssl, c->fd) != 1) {
		ERR_clear_error();
		nw_tls_free(c);
		return -1;
	}
	SSL_set_accept_state(c->ssl);
	c->tls_handshaking = true;
	return 0;
}

void
nw_tls_free(struct nw_conn *c)
{
	SSL_free(c->ssl);
	c->ssl = NULL;
	c->tls_handshaking = false;
	c->tls_want = 0;
}

/*
 * What the epoll set must also watch for: EPOLLOUT while a read (the
 * handshake, a key update's answer) waits for room to write.
 */
static void
want(struct nw_conn *c, uint32_t events)
{
	if (c->tls_want == events)
		return;
	c->tls_want = events;
	nw_conn_update_events(c);
}

/*
 * A plain HTTP request on a TLS port (OpenSSL recognises one): it gets a
 * plain 400 saying so, as nginx does, and the connection closes; other
 * failed handshakes (scanners, wrong versions, a refused client
 * certificate) just close.
 */
static bool
plain_http(struct nw_conn *c, unsigned long err)
{
	static const char body[] =
	    "This port speaks HTTPS: a plain HTTP request was sent to it.\n";
	char head[160];
	struct iovec iov[2];
	int n;

	if (ERR_GET_LIB(err) != ERR_LIB_SSL ||
	    (ERR_GET_REASON(err) != SSL_R_HTTP_REQUEST &&
	        ERR_GET_REASON(err) != SSL_R_HTTPS_PROXY_REQUEST))
		return false;
	nw_tls_free(c); /* the answer goes out in the clear */
	n = snprintf(head, sizeof head,
	    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	    sizeof body - 1);
	iov[0].iov_base = head;
	iov[0].iov_len = (size_t)n;
	iov[1].iov_base = (void *)body;
	iov[1].iov_len = sizeof body - 1;
	nw_conn_count(c, 400, (uint64_t)n + sizeof body - 1);
	nw_conn_refuse(c, iov, 2);
	return true;
}

/*
 * After an SSL call failed: -1 with errno EAGAIN when it only has to wait
 * (the epoll set says for what) or was answered here, or with errno set
 * for the caller to close; 0 for a clean end (close_notify, or an EOF
 * without one, which gunicorn's suppress_ragged_eofs also takes for one).
 */
static ssize_t
ssl_failed(struct nw_conn *c, int rc)
{
	int err = SSL_get_error(c->ssl, rc);
	unsigned long e;

	switch (err) {
	case SSL_ERROR_WANT_READ:
		want(c, 0);
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		want(c, EPOLLOUT);
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (errno == 0)
			return 0; /* EOF without close_notify */
		return -1; /* errno says what (EAGAIN: wait) */
	default:
		e = ERR_peek_error();
		ERR_clear_error();
		if (c->tls_handshaking && plain_http(c, e)) {
			errno = EAGAIN;
			return -1;
		}
		errno = EPROTO;
		return -1;
	}
}

/*
 * Reads what came into c->in after c->in.len (the caller counts it in):
 * the handshake first, then records until none is left whole. OpenSSL
 * reads ahead, so it may hold more than fits: the buffer grows until
 * OpenSSL holds no plaintext, because the epoll set would never report
 * bytes that already left the socket. Returns the bytes read, 0 at the
 * end, or -1 with errno (EAGAIN: nothing yet).
 */
ssize_t
nw_tls_read(struct nw_conn *c)
{
	size_t got = 0;
	int rc;

	if (c->tls_handshaking) {
		ERR_clear_error();
		errno = 0;
		if ((rc = SSL_do_handshake(c->ssl)) != 1)
			return ssl_failed(c, rc);
		c->tls_handshaking = false;
		want(c, 0);
	}
	for (;;) {
		size_t room = c->in.cap - c->in.len - got;

		if (room < 1024) {
			c->in.len += got; /* reserve keeps what is counted */
			rc = nw_buf_reserve(&c->in, 4096);
			c->in.len -= got;
			if (rc < 0) {
				errno = ENOMEM;
				return -1;
			}
			room = c->in.cap - c->in.len - got;
		}
		ERR_clear_error();
		errno = 0;
		rc = SSL_read(c->ssl, c->in.data + c->in.len + got,
		    room > INT32_MAX ? INT32_MAX : (int)room);
		if (rc <= 0) {
			ssize_t r = ssl_failed(c, rc);

			/* an end or an error after data is seen next time */
			return got > 0 ? (ssize_t)got : r;
		}
		got += (size_t)rc;
		if (!SSL_has_pending(c->ssl))
			return (ssize_t)got;
	}
}

/*
 * Writes c->out from c->opos as records (a partial write counts: a record
 * went). 0 when all went or the socket is full (EPOLLOUT will come), -1
 * when the client is gone.
 */
int
nw_tls_flush(struct nw_conn *c)
{
	while (c->opos < c->out.len) {
		size_t n = c->out.len - c->opos;
		int rc;

		ERR_clear_error();
		errno = 0;
		rc = SSL_write(c->ssl, c->out.data + c->opos,
		    n > INT32_MAX ? INT32_MAX : (int)n);
		if (rc > 0) {
			c->opos += (size_t)rc;
			continue;
		}
		/* No renegotiation: a write that wants to read waits for
		 * room too (it does not happen). */
		switch (SSL_get_error(c->ssl, rc)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return 0;
		default:
			ERR_clear_error();
			return -1;
		}
	}
	return 0;
}

/* close_notify before our FIN, if the socket takes it now. */
void
nw_tls_shutdown(struct nw_conn *c)
{
	if (c->tls_handshaking)
		return;
	ERR_clear_error();
	if (SSL_shutdown(c->ssl) < 0)
		ERR_clear_error();
}

/*
 * The blocking writer over TLS (nw_conn_writev_all): the iovecs are copied
 * into c->out, so that a head and a short body make one record, and
 * written out, sleeping in w->wait while the socket is full. 0, or -1 when
 * the client is gone or too slow.
 */
int
nw_tls_writev_all(
    const struct nw_writer *w, struct nw_conn *c, struct iovec *iov, int cnt)
{
	if (c->fd < 0 || c->ssl == NULL)
		return -1;
	if (nw_conn_queue(c, iov, cnt, 0) < 0)
		return -1;
	for (;;) {
		if (nw_tls_flush(c) < 0)
			return -1;
		if (c->opos == c->out.len)
			break;
		if (w->wait(w->arg, c->fd, w->timeout_ms) < 0)
			return -1;
	}
	c->opos = c->out.len = 0;
	if (c->out.cap > 256 * 1024)
		nw_buf_free(&c->out);
	return 0;
}
