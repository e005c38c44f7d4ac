/*
 * tree.c: what kind of code tree `chdir` is, and immutable snapshots of git
 * work trees deployed in place.
 *
 * A symlinked release needs nothing here: the generation keeps the link's
 * target. A git work tree updated in place (`git pull`) would let old
 * workers read new files, so each generation runs from a snapshot of its
 * commit, made by git itself (`git archive`) under <state_dir>/trees/, and a
 * failed reload moves the work tree back with `git reset --keep`, which
 * refuses to touch local changes. A plain directory is what it is; the log
 * says so at start-up. This file runs git and tar and decides nothing about
 * when: generation.c and rollback.c call it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

extern char **environ;

/*
 * Runs argv to completion and keeps what it printed (stdout and stderr).
 * It blocks the loop: only git and tar on the local disk, at a reload's
 * start or end. The child is reaped here, by its pid: libev's child watcher
 * only looks for the pids it was given.
 */
static int
run(char *const argv[], char *out, size_t outlen)
{
	int pipefd[2], status;
	size_t used = 0;
	pid_t pid;

	out[0] = '\0';
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (pid == 0) {
		sigset_t none;

		for (int sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		/* git needs none of the master's sockets. */
		close_range(3, ~0U, 0);
		execve(argv[0], argv, environ);
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		char buf[512];
		ssize_t n = read(pipefd[0], buf, sizeof buf);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && used + 1 < outlen; i++)
			out[used++] = buf[i];
	}
	close(pipefd[0]);
	out[used] = '\0';
	while (used > 0 && (out[used - 1] == '\n' || out[used - 1] == ' '))
		out[--used] = '\0';
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int
git(const char *worktree, char *out, size_t outlen, const char *a,
    const char *b, const char *c, const char *d)
{
	char safe[PATH_MAX + 32];
	/* Root reading a deploy user's repository: git's ownership check
	 * would refuse; this one directory is trusted by configuration. */
	char *argv[] = { "/usr/bin/git", "-c", safe, "-C", (char *)worktree,
		(char *)a, (char *)b, (char *)c, (char *)d, NULL };

	snprintf(safe, sizeof safe, "safe.directory=%s", worktree);
	return run(argv, out, outlen);
}

int
nw_tree_find_git(const char *tree, int walk_up, char *top, size_t toplen,
    const char **prefix)
{
	char dir[PATH_MAX], dotgit[PATH_MAX + 8];
	struct stat st;

	snprintf(dir, sizeof dir, "%s", tree);
	for (;;) {
		snprintf(dotgit, sizeof dotgit, "%s/.git", dir);
		if (lstat(dotgit, &st) == 0) {
			snprintf(top, toplen, "%s", dir);
			*prefix = tree + strlen(dir);
			while (**prefix == '/')
				(*prefix)++;
			return 0;
		}
		char *slash = strrchr(dir, '/');

		if (!walk_up || slash == NULL || slash == dir)
			return -1;
		*slash = '\0';
	}
}

int
nw_tree_head(const char *worktree, char *commit, size_t len, char *err,
    size_t errlen)
{
	char out[256];

	if (git(worktree, out, sizeof out, "rev-parse", "--verify", "HEAD",
		NULL) != 0 || strlen(out) < 40) {
		snprintf(err, errlen, "git work tree %s: no commit (%.120s)",
		    worktree, out);
		return -1;
	}
	snprintf(commit, len, "%.40s", out);
	return 0;
}

/* Whether tracked files differ from HEAD: a snapshot would not have them. */
int
nw_tree_dirty(const char *worktree)
{
	char out[256];

	return git(worktree, out, sizeof out, "status", "--porcelain",
	    "--untracked-files=no", NULL) == 0 && out[0] != '\0';
}

static void
trees_dir(struct nw_master *m, char *buf, size_t len)
{
	snprintf(buf, len, "%s/trees", m->state_dir);
}

int
nw_tree_snapshot(struct nw_master *m, const char *worktree,
    const char *commit, char *path, size_t pathlen, char *err, size_t errlen)
{
	char root[PATH_MAX], tmp[PATH_MAX + 32], out[1024];
	struct stat st;
	char *argv[] = { "/bin/sh", "-c",
		"git -c safe.directory=\"$1\" -C \"$1\" archive --format=tar "
		"-o \"$3.tar\" \"$2\" && tar -xf \"$3.tar\" -C \"$3\" && "
		"rm -f \"$3.tar\"",
		"sh", (char *)worktree, (char *)commit, tmp, NULL };

	trees_dir(m, root, sizeof root);
	snprintf(path, pathlen, "%s/%s", root, commit);
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0; /* made once, never changed */
	/* Workers may run as another user: they must reach the tree. */
	if (nw_mkdir_p(root, 0755) < 0) {
		snprintf(err, errlen, "snapshot dir %s: %s", root,
		    strerror(errno));
		return -1;
	}
	chmod(m->state_dir, 0711);
	chmod(root, 0755);
	snprintf(tmp, sizeof tmp, "%s/.new-%s-%d", root, commit, (int)getpid());
	nw_tree_remove(tmp);
	if (mkdir(tmp, 0755) < 0) {
		snprintf(err, errlen, "snapshot %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (run(argv, out, sizeof out) != 0) {
		snprintf(err, errlen, "cannot snapshot commit %.12s of %s with "
		    "git archive: %.200s", commit, worktree, out);
		char tar[sizeof tmp + 8];

		nw_tree_remove(tmp);
		snprintf(tar, sizeof tar, "%s.tar", tmp);
		unlink(tar);
		return -1;
	}
	if (rename(tmp, path) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
		snprintf(err, errlen, "snapshot %s: %s", path, strerror(errno));
		nw_tree_remove(tmp);
		return -1;
	}
	nw_tree_remove(tmp); /* another made it first */
	nw_info("snapshot of commit %.12s of %s in %s", commit, worktree, path);
	return 0;
}

int
nw_tree_revert(const char *worktree, const char *failed, const char *good,
    char *note, size_t notelen)
{
	char head[64], err[256], out[1024];

	if (nw_tree_head(worktree, head, sizeof head, err, sizeof err) < 0) {
		snprintf(note, notelen, "%s", err);
		return -1;
	}
	if (strcmp(head, failed) != 0) {
		snprintf(note, notelen, "%s is no longer on commit %.12s: left "
		    "alone", worktree, failed);
		return -1;
	}
	/* --keep: --hard that refuses to drop local changes. */
	if (git(worktree, out, sizeof out, "reset", "--keep", good, NULL) !=
	    0) {
		snprintf(note, notelen, "cannot move %s back to commit %.12s "
		    "(git reset --keep: %.200s): left on %.12s", worktree, good,
		    out, failed);
		return -1;
	}
	snprintf(note, notelen, "%s is back on commit %.12s (git reset "
	    "--keep: local changes kept; the failed commit is ORIG_HEAD)",
	    worktree, good);
	return 0;
}

static int
remove_entry(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

void
nw_tree_remove(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int
in_use(struct nw_master *m, const char *path, const char *good)
{
	struct nw_generation *g;
	size_t len = strlen(path);

	TAILQ_FOREACH(g, &m->generations, entry)
		if (strncmp(g->tree, path, len) == 0 &&
		    (g->tree[len] == '\0' || g->tree[len] == '/'))
			return 1;
	return good != NULL && strncmp(good, path, len) == 0 &&
	    (good[len] == '\0' || good[len] == '/');
}

/* Snapshots no generation runs from and that are not the last good one. */
void
nw_tree_prune(struct nw_master *m)
{
	char root[PATH_MAX], *good = nw_state_load_good(m);
	struct dirent *e;
	DIR *dir;

	trees_dir(m, root, sizeof root);
	if ((dir = opendir(root)) == NULL) {
		free(good);
		return;
	}
	while ((e = readdir(dir)) != NULL) {
		char path[PATH_MAX + 300];

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", root, e->d_name);
		if (!in_use(m, path, good))
			nw_tree_remove(path);
	}
	closedir(dir);
	free(good);
}
