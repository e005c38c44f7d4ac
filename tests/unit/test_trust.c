/*
 * test_trust.c: nw_path_trusted(), which decides whether the master may keep
 * its control socket and state in a directory: owned by us or root all the
 * way down, as written and as resolved, and writable by no one else (but for
 * a sticky directory above the last step, such as /tmp).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "master.h"
#include "tap.h"

#define OTHER_UID 47999

static char base[64];

static const char *
at(const char *name)
{
	static char path[4][128];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, sizeof path[0], "%s/%s", base, name);
	return p;
}

static void
dir(const char *name, mode_t mode)
{
	if (mkdir(at(name), 0700) < 0 || chmod(at(name), mode) < 0)
		perror(at(name));
}

static int
trusted(const char *name, int sticky_ok, char *err, size_t len)
{
	return nw_path_trusted(at(name), geteuid(), sticky_ok, err, len) == 0;
}

int
main(void)
{
	char err[768];

	snprintf(base, sizeof base, "/tmp/nw-trust-XXXXXX");
	if (mkdtemp(base) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	dir("ok", 0700);
	dir("shared", 0755);
	dir("open", 0777);
	dir("open/inner", 0700);
	dir("group", 0770);
	dir("sticky", 01777);
	dir("sticky/mine", 0700);
	if (symlink(at("ok"), at("link")) < 0 ||
	    symlink(at("open/inner"), at("link-open")) < 0)
		perror("symlink");

	ok(trusted("ok", 0, err, sizeof err), "a 0700 dir of ours");
	ok(trusted("shared", 0, err, sizeof err), "a 0755 dir of ours");
	ok(!trusted("open", 0, err, sizeof err) &&
	    strstr(err, "writable by everyone (mode 0777)") != NULL,
	    "a 0777 dir: %s", err);
	ok(!trusted("open/inner", 0, err, sizeof err) &&
	    strstr(err, "/open is writable") != NULL,
	    "a dir of ours under a 0777 one: %s", err);
	ok(!trusted("group", 0, err, sizeof err) &&
	    strstr(err, "writable by its group") != NULL,
	    "a 0770 dir: %s", err);
	ok(!trusted("sticky", 0, err, sizeof err),
	    "a sticky 1777 dir as the last step");
	ok(trusted("sticky", 1, err, sizeof err),
	    "... is fine for a socket of its own (sticky_ok)");
	ok(trusted("sticky/mine", 0, err, sizeof err),
	    "a 0700 dir of ours in a sticky one (as /tmp/narwhal-UID)");
	ok(trusted("link", 0, err, sizeof err), "a symlink of ours to ours");
	ok(!trusted("link-open", 0, err, sizeof err),
	    "a symlink leading under a 0777 dir: %s", err);
	ok(!trusted("missing", 0, err, sizeof err) &&
	    strstr(err, "No such file") != NULL, "a missing dir: %s", err);
	ok(nw_path_trusted("/", geteuid(), 0, err, sizeof err) == 0, "/");

	if (geteuid() != 0) {
		skip("not root: cannot make dirs of another uid");
		skip("not root: cannot make symlinks of another uid");
	} else {
		char want[256];

		dir("theirs", 0700);
		if (chown(at("theirs"), OTHER_UID, OTHER_UID) < 0)
			perror("chown");
		snprintf(want, sizeof want, "is owned by uid %d", OTHER_UID);
		ok(nw_path_trusted(at("theirs"), 1000, 0, err, sizeof err) < 0 &&
		    strstr(err, want) != NULL,
		    "a dir of another uid: %s", err);
		if (lchown(at("link"), OTHER_UID, OTHER_UID) < 0)
			perror("lchown");
		ok(nw_path_trusted(at("link"), 1000, 0, err, sizeof err) < 0,
		    "a symlink of another uid: %s", err);
		ok(nw_path_trusted(at("theirs"), OTHER_UID, 0, err,
		       sizeof err) == 0,
		    "... but fine for a master of that uid");
	}
	{
		char cmd[128];

		snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
		if (system(cmd) != 0)
			diag("could not remove %s", base);
	}
	return done_testing();
}
