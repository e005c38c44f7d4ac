/*
 * generation.c: a config snapshot bound to the code tree it resolved to.
 *
 * The tree is the realpath of `chdir` at the moment the generation is made,
 * so a `current -> releases/v42` symlink picks v42 and that generation's
 * workers stay there whatever the link does later. A git work tree deployed
 * in place is pinned the same way: the generation runs from a snapshot of
 * the commit checked out now (tree.c). A generation lives while a worker or
 * the master still refers to it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

struct nw_generation *
nw_generation_new(struct nw_master *m, struct nw_config *config,
    const char *tree, char *err, size_t errlen)
{
	char resolved[PATH_MAX], target[PATH_MAX], top[PATH_MAX];
	char commit[64], snap[PATH_MAX], pinned[2 * PATH_MAX + 2];
	const char *prefix = "";
	struct nw_generation *g;
	int git = 0;
	struct stat st;
	ssize_t n;

	if (tree == NULL)
		tree = config->chdir;
	if (realpath(tree, resolved) == NULL) {
		snprintf(err, errlen, "chdir %s: %s", tree, strerror(errno));
		return NULL;
	}
	if (stat(resolved, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "chdir %s: not a directory", resolved);
		return NULL;
	}
	if (tree == config->chdir && config->snapshot != NW_SNAPSHOT_OFF &&
	    nw_tree_find_git(resolved, config->snapshot == NW_SNAPSHOT_GIT,
		top, sizeof top, &prefix) == 0) {
		if (nw_tree_head(top, commit, sizeof commit, err, errlen) < 0 ||
		    nw_tree_snapshot(m, top, commit, snap, sizeof snap, err,
			errlen) < 0)
			return NULL;
		if (nw_tree_dirty(top))
			nw_warn("git work tree %s has changes to tracked files "
			    "that are not committed: generation runs commit "
			    "%.12s without them", top, commit);
		/* prefix points into resolved: build beside it. */
		if ((size_t)snprintf(pinned, sizeof pinned, "%s%s%s", snap,
			*prefix ? "/" : "", prefix) >= sizeof resolved) {
			snprintf(err, errlen, "chdir %s: path too long", prefix);
			return NULL;
		}
		memcpy(resolved, pinned, strlen(pinned) + 1);
		if (stat(resolved, &st) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "chdir %s: not in commit %.12s",
			    prefix, commit);
			return NULL;
		}
		git = 1;
	}
	g = nw_calloc(1, sizeof *g);
	g->id = ++m->next_generation_id;
	g->config = config;
	g->tree = nw_strdup(resolved);
	if (git) {
		g->worktree = nw_strdup(top);
		g->commit = nw_strdup(commit);
	}
	/* A tree given explicitly (the last good one) is not what the
	 * link says: keep no link text that would resolve elsewhere. */
	n = tree == config->chdir
	    ? readlink(config->chdir, target, sizeof target - 1) : -1;
	if (n > 0) {
		target[n] = '\0';
		g->link_target = nw_strdup(target);
	}
	g->refs = 1; /* the caller's */
	TAILQ_INSERT_TAIL(&m->generations, g, entry);
	return g;
}

void
nw_generation_hold(struct nw_generation *g)
{
	g->refs++;
}

void
nw_generation_release(struct nw_master *m, struct nw_generation *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	TAILQ_REMOVE(&m->generations, g, entry);
	nw_config_free(g->config);
	free(g->tree);
	free(g->link_target);
	free(g->worktree);
	free(g->commit);
	free(g);
}

/*
 * What the tree is and what a reload can promise for it, in one line. A
 * plain directory is said at warning level: its old workers see new files
 * as they are written, and a failed reload cannot put it back.
 */
void
nw_generation_describe(struct nw_master *m, struct nw_generation *g)
{
	if (g->commit != NULL)
		nw_info("generation %u: git work tree %s at commit %.12s, "
		    "running from its snapshot %s", g->id, g->worktree,
		    g->commit, g->tree);
	else if (g->link_target != NULL)
		nw_info("generation %u: release %s (%s -> %s)", g->id, g->tree,
		    g->config->chdir, g->link_target);
	else if (nw_generation_is_plain(g))
		nw_warn("generation %u: %s is a plain directory: old workers "
		    "read new files as they are written, and a failed reload "
		    "cannot put them back; deploy releases behind a symlink "
		    "or as a git work tree (if narwhal was started inside a "
		    "symlinked release, set chdir to the symlink)", g->id,
		    g->tree);
}

int
nw_generation_is_plain(const struct nw_generation *g)
{
	return g->commit == NULL && g->link_target == NULL &&
	    strcmp(g->tree, g->config->chdir) == 0;
}
