/*
 * fuzz_config.c: libFuzzer harness for the config loader, on any file.
 *
 * The input is the INI file given with -c (a memfd, so nothing is written
 * to disk, reached through a symlink named *.ini: a file without [sections]
 * and no .ini would be taken for a gunicorn.conf.py and run by Python). The
 * loader must answer a config or an error naming the file and line, never
 * crash, leak, or leave a half-built struct. Both the master's loader and
 * the client's lenient one are run.
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

static char dir[64], path[96];

static void
cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	char err[1024], target[64];
	char *argv[] = { "narwhal", "-c", path, NULL };
	struct nw_config *c;

	if (fd < 0) {
		fd = memfd_create("narwhal.ini", MFD_CLOEXEC);
		CHECK(fd >= 0);
		snprintf(dir, sizeof dir, "/tmp/nwfuzz-config-XXXXXX");
		CHECK(mkdtemp(dir) != NULL);
		snprintf(path, sizeof path, "%s/narwhal.ini", dir);
		snprintf(target, sizeof target, "/proc/%d/fd/%d", (int)getpid(),
		    fd);
		CHECK(symlink(target, path) == 0);
		atexit(cleanup);
	}
	CHECK(ftruncate(fd, 0) == 0);
	CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);

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
