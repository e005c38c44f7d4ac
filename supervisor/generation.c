/*
 * generation.c: a config snapshot bound to the code tree it resolved to.
 *
 * The tree is the realpath of `chdir` at the moment the generation is made,
 * so a `current -> releases/v42` symlink picks v42 and that generation's
 * workers stay there whatever the link does later. A generation lives while a
 * worker or the master still refers to it.
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
	char resolved[PATH_MAX], target[PATH_MAX];
	struct nw_generation *g;
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
	g = nw_calloc(1, sizeof *g);
	g->id = ++m->next_generation_id;
	g->config = config;
	g->tree = nw_strdup(resolved);
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
	free(g);
}
