/*
 * curl_lib.c: loads libcurl with dlopen the first time a config sets
 * ready_path, and finds the functions probe.c calls.
 *
 * The master is not linked with libcurl because loading it maps its TLS,
 * Kerberos and LDAP libraries too: about 8 MB of RSS, for a feature not every
 * deployment uses. This file only loads; probe.c does the requests.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "master.h"

/* The SONAME of Debian's libcurl4, which the package depends on. */
#define LIBCURL "libcurl.so.4"

static const struct {
	const char *name;
	size_t offset;
} symbols[] = {
#define SYMBOL(field) { "curl_" #field, offsetof(struct nw_libcurl, field) }
	SYMBOL(global_init),
	SYMBOL(global_cleanup),
	SYMBOL(multi_init),
	SYMBOL(multi_setopt),
	SYMBOL(multi_socket_action),
	SYMBOL(multi_info_read),
	SYMBOL(multi_add_handle),
	SYMBOL(multi_remove_handle),
	SYMBOL(multi_assign),
	SYMBOL(multi_cleanup),
	SYMBOL(easy_init),
	SYMBOL(easy_setopt),
	SYMBOL(easy_getinfo),
	SYMBOL(easy_cleanup),
	SYMBOL(easy_strerror),
	SYMBOL(slist_append),
	SYMBOL(slist_free_all),
#undef SYMBOL
};

int
nw_libcurl_load(struct nw_libcurl *lib, char *err, size_t errlen)
{
	void *handle, *f;

	if (lib->handle != NULL)
		return 0;
	/* RTLD_NOW: a library that lacks something fails here, while the
	 * config is judged, not during some later probe. */
	handle = dlopen(LIBCURL, RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL) {
		snprintf(err, errlen, "ready_path needs libcurl: %s",
		    dlerror());
		return -1;
	}
	for (size_t i = 0; i < sizeof symbols / sizeof *symbols; i++) {
		if ((f = dlsym(handle, symbols[i].name)) == NULL) {
			snprintf(err, errlen, "ready_path needs libcurl: %s",
			    dlerror());
			dlclose(handle);
			return -1;
		}
		/* POSIX lets dlsym's object pointer hold a function. */
		memcpy((char *)lib + symbols[i].offset, &f, sizeof f);
	}
	/* Never dlclose'd once loaded: libcurl's TLS library may have
	 * registered exit handlers. */
	lib->handle = handle;
	return 0;
}
