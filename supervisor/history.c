/*
 * history.c: the trees that last went fully live, and `narwhal rollback`,
 * which goes back to the one before the current one.
 *
 * A rollback is a reload with the previous tree: when `chdir` is a symlink
 * the link is pointed back first (so a later reload or restart keeps it),
 * otherwise the tree is given to the reload directly. Either way it gets the
 * reload's safety: health checks, old workers kept until new ones are live,
 * and the tree put back if the rollback's own workers fail. This file never
 * starts or stops a worker.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

static void
entry_free(struct nw_good_tree *e)
{
	free(e->tree);
	free(e->link_target);
	e->tree = e->link_target = NULL;
}

/* The newest entry; the oldest goes when the list is full. */
static void
append(struct nw_master *m, const char *tree, const char *link_target)
{
	if (m->ngood == NW_GOOD_KEEP) {
		entry_free(&m->good[0]);
		memmove(&m->good[0], &m->good[1],
		    (NW_GOOD_KEEP - 1) * sizeof m->good[0]);
		m->ngood--;
	}
	m->good[m->ngood].tree = nw_strdup(tree);
	m->good[m->ngood].link_target =
	    link_target ? nw_strdup(link_target) : NULL;
	m->ngood++;
}

/* g went fully live (start-up or reload): it is the newest good tree. */
void
nw_history_push(struct nw_master *m, struct nw_generation *g)
{
	struct nw_good_tree *top;

	if (m->metrics.rollback_manual == 1 && m->ngood >= 2 &&
	    strcmp(m->good[m->ngood - 2].tree, g->tree) == 0) {
		/* Back on the previous tree: the one left is not good. */
		entry_free(&m->good[--m->ngood]);
		return;
	}
	top = m->ngood > 0 ? &m->good[m->ngood - 1] : NULL;
	if (top != NULL && strcmp(top->tree, g->tree) == 0) {
		free(top->link_target);
		top->link_target = g->link_target ? nw_strdup(g->link_target)
						  : NULL;
		return;
	}
	append(m, g->tree, g->link_target);
}

/*
 * <state_dir>/good-trees keeps the list across restarts, so that `narwhal
 * rollback` after a `systemctl restart` still knows the tree before: one
 * "tree<TAB>link target" a line, oldest first. A path holding a tab or a
 * newline is left out (it could not be read back).
 */
static void
history_path(const struct nw_master *m, char *buf, size_t len)
{
	snprintf(buf, len, "%s/good-trees", m->state_dir);
}

static int
writable_path(const char *p)
{
	return p == NULL || strpbrk(p, "\t\n") == NULL;
}

void
nw_history_save(struct nw_master *m)
{
	char path[PATH_MAX], tmp[PATH_MAX + 16];
	FILE *f;
	int i, ok;

	history_path(m, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL) {
		nw_warn("cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	for (i = 0; i < m->ngood; i++) {
		const struct nw_good_tree *e = &m->good[i];

		if (writable_path(e->tree) && writable_path(e->link_target))
			fprintf(f, "%s\t%s\n", e->tree,
			    e->link_target ? e->link_target : "");
	}
	/* fsync before rename: after a crash, the old file or the new one. */
	ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	fclose(f);
	if (!ok || rename(tmp, path) < 0) {
		nw_warn("cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
	}
}

/* At start-up, the list the last run left, without trees gone since. */
void
nw_history_load(struct nw_master *m)
{
	char path[PATH_MAX], line[2 * PATH_MAX + 4], *tab;
	FILE *f;

	history_path(m, path, sizeof path);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof line, f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if ((tab = strchr(line, '\t')) == NULL)
			continue;
		*tab++ = '\0';
		if (line[0] != '/' || access(line, R_OK | X_OK) < 0)
			continue;
		append(m, line, *tab ? tab : NULL);
	}
	fclose(f);
	if (m->ngood > 0)
		nw_info("rollback history: %d good tree%s from %s, newest %s",
		    m->ngood, m->ngood == 1 ? "" : "s", path,
		    m->good[m->ngood - 1].tree);
}

/* Points the chdir link at target, atomically (a new link renamed over). */
static int
point_link(const char *link, const char *target, char *why, size_t whylen)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof tmp, "%s.narwhal-rollback.%d", link,
	    (int)getpid());
	unlink(tmp);
	if (symlink(target, tmp) < 0 || rename(tmp, link) < 0) {
		snprintf(why, whylen, "cannot point %s at %s: %s", link, target,
		    strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/*
 * Starts a reload of the previous good tree: 0, or -1 with why filled in
 * (nothing changed). A reload running now is the caller's business.
 */
int
nw_history_rollback(struct nw_master *m, const char *cause, char *why,
    size_t whylen)
{
	const struct nw_config *c = m->current->config;
	const struct nw_good_tree *prev;

	if (m->stopping != NW_RUNNING) {
		snprintf(why, whylen, "the master is stopping");
		return -1;
	}
	if (!m->first_live) {
		snprintf(why, whylen, "not live yet: nothing to go back from");
		return -1;
	}
	if (m->ngood < 2) {
		snprintf(why, whylen, "no earlier good generation to go back "
		    "to (tree %s is the only one)", m->current->tree);
		return -1;
	}
	prev = &m->good[m->ngood - 2];
	if (access(prev->tree, R_OK | X_OK) < 0) {
		snprintf(why, whylen, "previous tree %s: %s", prev->tree,
		    strerror(errno));
		return -1;
	}
	free(m->reload_tree);
	m->reload_tree = NULL;
	if (c->rollback == NW_ROLLBACK_SYMLINK &&
	    m->current->link_target != NULL) {
		const char *target = prev->link_target ? prev->link_target
						       : prev->tree;

		if (point_link(c->chdir, target, why, whylen) < 0)
			return -1;
		free(m->rollback_undo);
		m->rollback_undo = nw_strdup(m->current->link_target);
		nw_warn("rollback: %s points at %s (was %s)", c->chdir, target,
		    m->current->link_target);
	} else {
		m->reload_tree = nw_strdup(prev->tree);
	}
	nw_info("rollback: going back from %s to %s", m->current->tree,
	    prev->tree);
	m->metrics.rollback_manual = 1;
	nw_reload_request(m, cause);
	return 0;
}

/*
 * A rollback refused before it started (the config file became invalid)
 * must not leave the link moved; one whose tree failed had it put back by
 * nw_rollback_tree() already.
 */
void
nw_history_reload_finished(struct nw_master *m)
{
	char why[512];

	if (m->metrics.rollback_manual == 1 && m->rollback_undo != NULL &&
	    m->last_outcome == NW_RELOAD_INVALID_CONFIG) {
		if (point_link(m->current->config->chdir, m->rollback_undo, why,
		    sizeof why) < 0)
			nw_error("rollback: %s", why);
		else
			nw_warn("rollback: refused; %s points at %s again",
			    m->current->config->chdir, m->rollback_undo);
	}
	free(m->rollback_undo);
	m->rollback_undo = NULL;
}

void
nw_history_free(struct nw_master *m)
{
	free(m->rollback_undo);
	m->rollback_undo = NULL;
	while (m->ngood > 0)
		entry_free(&m->good[--m->ngood]);
	free(m->reload_tree);
	m->reload_tree = NULL;
}
