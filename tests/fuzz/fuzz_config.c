/*
 * fuzz_config.c: libFuzzer harness for the config loader, on any file.
 *
 * The input is the INI file given with -c (from a memfd, so nothing is
 * written to disk). The loader must answer a config or an error naming
 * the file and line, never crash, leak, or leave a half-built struct.
 * Both the master's loader and the client's lenient one are run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "fuzz_config: %s:%d: %s\n", __FILE__,  \
			    __LINE__, #cond);                                  \
			abort();                                               \
		}                                                              \
	} while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	char path[64], err[1024];
	char *argv[] = { "narwhal", "-c", path, NULL };
	struct nw_config *c;

	if (fd < 0) {
		fd = memfd_create("narwhal.ini", MFD_CLOEXEC);
		CHECK(fd >= 0);
	}
	CHECK(ftruncate(fd, 0) == 0);
	CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

	err[0] = '\0';
	c = nw_config_load(3, argv, err, sizeof err);
	if (c == NULL)
		CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
	else
		nw_config_free(c);
	c = nw_config_load_lenient(3, argv, err, sizeof err);
	if (c != NULL)
		nw_config_free(c);
	return 0;
}
