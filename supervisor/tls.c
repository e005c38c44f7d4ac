/*
 * tls.c: checks a config's TLS files (certfile, keyfile, ca_certs) and its
 * cipher list with the OpenSSL the workers use, so that --check-config, the
 * start and a reload name a bad file before any worker tries it.
 *
 * libssl is loaded with dlopen only for a config that sets certfile: the
 * master of a plain-HTTP deployment never maps it. The workers load the
 * same files again themselves (worker-shim/src/engine/tls.c); this file
 * serves nothing and keeps nothing.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"

/* The SONAME of Debian's libssl3, which libssl-dev builds the shim with. */
#define LIBSSL "libssl.so.3"
#define PEM 1 /* SSL_FILETYPE_PEM */

struct libssl {
	const void *(*TLS_server_method)(void);
	void *(*SSL_CTX_new)(const void *method);
	void (*SSL_CTX_free)(void *ctx);
	int (*SSL_CTX_use_certificate_chain_file)(void *ctx, const char *file);
	int (*SSL_CTX_use_PrivateKey_file)(void *ctx, const char *file, int);
	int (*SSL_CTX_check_private_key)(const void *ctx);
	int (*SSL_CTX_load_verify_locations)(
	    void *ctx, const char *file, const char *path);
	int (*SSL_CTX_set_cipher_list)(void *ctx, const char *list);
	unsigned long (*ERR_peek_last_error)(void);
	const char *(*ERR_reason_error_string)(unsigned long e);
	void (*ERR_clear_error)(void);
};

static const struct {
	const char *name;
	size_t offset;
} symbols[] = {
#define SYMBOL(f) { #f, offsetof(struct libssl, f) }
	SYMBOL(TLS_server_method),
	SYMBOL(SSL_CTX_new),
	SYMBOL(SSL_CTX_free),
	SYMBOL(SSL_CTX_use_certificate_chain_file),
	SYMBOL(SSL_CTX_use_PrivateKey_file),
	SYMBOL(SSL_CTX_check_private_key),
	SYMBOL(SSL_CTX_load_verify_locations),
	SYMBOL(SSL_CTX_set_cipher_list),
	SYMBOL(ERR_peek_last_error),
	SYMBOL(ERR_reason_error_string),
	SYMBOL(ERR_clear_error),
#undef SYMBOL
};

/* OpenSSL's reason for the last failure, in words. */
static const char *
reason(const struct libssl *l)
{
	unsigned long e = l->ERR_peek_last_error();
	const char *r = e != 0 ? l->ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : "unknown error";
}

/* A file the master can open at all: else why, with errno's words. */
static int
readable(const char *path, char *why, size_t whylen)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return -1;
	}
	fclose(f);
	return 0;
}

static int
check(const struct libssl *l, void *ctx, const struct nw_config *c,
    const char **key, char *why, size_t whylen)
{
	const char *keyfile = c->keyfile != NULL ? c->keyfile : c->certfile;

	*key = "certfile";
	if (readable(c->certfile, why, whylen) < 0)
		return -1;
	if (l->SSL_CTX_use_certificate_chain_file(ctx, c->certfile) != 1) {
		snprintf(why, whylen, "%s: not a usable PEM certificate "
		    "(chain) (OpenSSL: %s)", c->certfile, reason(l));
		return -1;
	}
	*key = c->keyfile != NULL ? "keyfile" : "certfile";
	if (readable(keyfile, why, whylen) < 0)
		return -1;
	if (l->SSL_CTX_use_PrivateKey_file(ctx, keyfile, PEM) != 1) {
		if (strcmp(reason(l), "key values mismatch") == 0)
			snprintf(why, whylen, "%s: the key does not match the "
			    "certificate in %s", keyfile, c->certfile);
		else
			snprintf(why, whylen, "%s: no usable PEM private "
			    "key%s (OpenSSL: %s)", keyfile,
			    c->keyfile == NULL ? " (set keyfile when the key "
			    "is in a file of its own)" : "", reason(l));
		return -1;
	}
	if (l->SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(why, whylen, "%s: the key does not match the "
		    "certificate in %s (OpenSSL: %s)", keyfile, c->certfile,
		    reason(l));
		return -1;
	}
	if (c->ca_certs != NULL) {
		*key = "ca_certs";
		if (readable(c->ca_certs, why, whylen) < 0)
			return -1;
		if (l->SSL_CTX_load_verify_locations(ctx, c->ca_certs, NULL) !=
		    1) {
			snprintf(why, whylen, "%s: no usable PEM CA "
			    "certificates (OpenSSL: %s)", c->ca_certs,
			    reason(l));
			return -1;
		}
	}
	if (c->ciphers != NULL) {
		*key = "ciphers";
		if (l->SSL_CTX_set_cipher_list(ctx, c->ciphers) != 1) {
			snprintf(why, whylen, "'%s': OpenSSL takes none of "
			    "these ciphers (%s)", c->ciphers, reason(l));
			return -1;
		}
	}
	return 0;
}

/*
 * 0 if c has no TLS, or if its files load as the workers will load them;
 * -1 with the key to blame and why (naming the file).
 */
int
nw_tls_check(const struct nw_config *c, const char **key, char *why,
    size_t whylen)
{
	struct libssl l;
	void *handle, *f, *ctx;
	int rc;

	*key = "certfile";
	if (c->certfile == NULL)
		return 0;
	if ((handle = dlopen(LIBSSL, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(why, whylen, "TLS needs OpenSSL 3 (%s): %s", LIBSSL,
		    dlerror());
		return -1;
	}
	for (size_t i = 0; i < sizeof symbols / sizeof *symbols; i++) {
		if ((f = dlsym(handle, symbols[i].name)) == NULL) {
			snprintf(why, whylen, "TLS needs OpenSSL 3: %s",
			    dlerror());
			dlclose(handle);
			return -1;
		}
		/* POSIX lets dlsym's object pointer hold a function. */
		memcpy((char *)&l + symbols[i].offset, &f, sizeof f);
	}
	l.ERR_clear_error();
	if ((ctx = l.SSL_CTX_new(l.TLS_server_method())) == NULL) {
		snprintf(why, whylen, "OpenSSL: %s", reason(&l));
		rc = -1;
	} else {
		rc = check(&l, ctx, c, key, why, whylen);
		l.SSL_CTX_free(ctx);
	}
	l.ERR_clear_error();
	/* libcrypto stays mapped (it pins itself); libssl may go */
	dlclose(handle);
	return rc;
}
