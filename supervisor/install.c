/*
 * install.c: where this narwhal is installed, and what that implies: the
 * directory holding the worker shim, and, for a narwhal installed from a
 * wheel into a Python environment (a virtualenv, a Docker image's
 * /usr/local), that environment's interpreter, which gunicorn would have run.
 *
 * It only looks at the file system next to /proc/self/exe; it starts
 * nothing and keeps no state.
 */
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* The directory of the running binary, symlinks resolved by the kernel. */
static int
exe_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	char *slash;

	if (n < 0)
		return -1;
	buf[n] = '\0';
	if ((slash = strrchr(buf, '/')) == NULL)
		return -1;
	*slash = '\0';
	return 0;
}

/* A wheel puts the shim in <prefix>/lib/pythonX.Y/site-packages. */
static char *
wheel_shim_dir(const char *dir)
{
	static const char *const patterns[] = {
		"%s/../lib/python3*/site-packages/narwhal_worker/__init__.py",
		"%s/../lib/python3*/dist-packages/narwhal_worker/__init__.py",
		"%s/../lib64/python3*/site-packages/narwhal_worker/__init__.py",
	};
	char pattern[PATH_MAX + 96], resolved[PATH_MAX], *found = NULL;
	glob_t g;

	for (size_t i = 0; i < sizeof patterns / sizeof *patterns && !found;
	     i++) {
		snprintf(pattern, sizeof pattern, patterns[i], dir);
		if (glob(pattern, 0, NULL, &g) != 0)
			continue;
		if (g.gl_pathc > 0) {
			/* .../site-packages/narwhal_worker/__init__.py */
			*strrchr(g.gl_pathv[0], '/') = '\0';
			*strrchr(g.gl_pathv[0], '/') = '\0';
			if (realpath(g.gl_pathv[0], resolved) != NULL)
				found = strdup(resolved);
		}
		globfree(&g);
	}
	return found;
}

char *
nw_shim_dir(void)
{
	const char *env = getenv("NARWHAL_SHIM_DIR");
	static const char *const relative[] = { "worker-shim",
		"../lib/narwhal" };
	char exe[PATH_MAX], candidate[PATH_MAX + 64], probe[PATH_MAX + 96];
	char resolved[PATH_MAX], *wheel;

	if (env != NULL && *env != '\0')
		return strdup(env);
	if (exe_dir(exe, sizeof exe) < 0)
		return strdup("/usr/lib/narwhal");
	for (size_t i = 0; i < sizeof relative / sizeof *relative; i++) {
		snprintf(candidate, sizeof candidate, "%s/%s", exe,
		    relative[i]);
		snprintf(probe, sizeof probe, "%s/narwhal_worker/__init__.py",
		    candidate);
		if (access(probe, R_OK) == 0 &&
		    realpath(candidate, resolved) != NULL)
			return strdup(resolved);
	}
	if ((wheel = wheel_shim_dir(exe)) != NULL)
		return wheel;
	return strdup("/usr/lib/narwhal");
}

char *
nw_installed_python(void)
{
	char exe[PATH_MAX], python[PATH_MAX + 16], *shim;

	if (exe_dir(exe, sizeof exe) < 0 || (shim = wheel_shim_dir(exe)) ==
	    NULL)
		return NULL;
	free(shim);
	/* Not resolved: a virtualenv's python3 is a symlink, and only the
	 * path inside the environment makes Python use it. */
	snprintf(python, sizeof python, "%s/python3", exe);
	if (access(python, X_OK) != 0)
		snprintf(python, sizeof python, "%s/python", exe);
	return access(python, X_OK) == 0 ? strdup(python) : NULL;
}

int
nw_shim_in_site_packages(const char *shim_dir)
{
	size_t n = strlen(shim_dir);

	return (n >= 14 && strcmp(shim_dir + n - 14, "/site-packages") == 0) ||
	    (n >= 14 && strcmp(shim_dir + n - 14, "/dist-packages") == 0);
}
