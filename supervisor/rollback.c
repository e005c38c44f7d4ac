/*
 * rollback.c: undoing a deploy that failed, and remembering the last good one.
 *
 * It puts a `chdir` symlink back on the tree that still serves (only if the
 * link still points at the failed tree), or a git work tree back on the
 * commit that still serves (only if it is still on the failed commit, and
 * never at the cost of local changes: tree.c), runs the operator's on_rollback
 * command, keeps the last fully live tree in a state file, and lets a cold
 * start whose tree never boots fall back to that tree. It never decides that
 * a generation failed: reload.c and supervise.c do.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

extern char **environ;

void
nw_rollback_tree(struct nw_master *m, struct nw_generation *failed,
    struct nw_generation *restored, char *note, size_t notelen)
{
	const char *link = failed->config->chdir;
	const char *target = restored->link_target ? restored->link_target
						   : restored->tree;
	char now[PATH_MAX], tmp[PATH_MAX];

	if (failed->config->rollback == NW_ROLLBACK_NONE)
		return;
	if (failed->worktree != NULL && restored->commit != NULL &&
	    strcmp(failed->worktree, restored->worktree ? restored->worktree
							: "") == 0) {
		if (strcmp(failed->commit, restored->commit) == 0)
			return; /* the same commit failed: nothing to undo */
		if (nw_tree_revert(failed->worktree, failed->commit,
			restored->commit, note, notelen) < 0)
			nw_error("rollback: %s", note);
		else
			nw_warn("rollback: %s", note);
		return;
	}
	if (failed->link_target == NULL)
		return;
	if (strcmp(failed->tree, restored->tree) == 0)
		return; /* the same tree failed: nothing to put back */
	if (realpath(link, now) == NULL || strcmp(now, failed->tree) != 0) {
		snprintf(note, notelen,
		    "%s no longer points at %s: left alone", link,
		    failed->tree);
		nw_warn("rollback: %s", note);
		return;
	}
	/* A new link renamed over the old one: never a moment without. */
	snprintf(tmp, sizeof tmp, "%s.narwhal-rollback.%d", link, (int)getpid());
	unlink(tmp);
	if (symlink(target, tmp) < 0 || rename(tmp, link) < 0) {
		snprintf(note, notelen, "cannot point %s back at %s: %s", link,
		    target, strerror(errno));
		nw_error("rollback: %s", note);
		unlink(tmp);
		return;
	}
	snprintf(note, notelen, "%s points back at %s", link, target);
	nw_warn("rollback: %s", note);
}

struct hook_child {
	ev_child child;
	char *name;
};

static void
on_hook_exit(struct ev_loop *loop, ev_child *c, int revents)
{
	struct hook_child *h = container_of(c, struct hook_child, child);

	ev_child_stop(loop, c);
	nw_info("on_rollback %s exited with status %d", h->name, c->rstatus);
	free(h->name);
	free(h);
}

void
nw_rollback_hook(struct nw_master *m, struct nw_generation *failed,
    struct nw_generation *restored, const char *reason)
{
	char **argv = failed->config->on_rollback;
	char *envp[512];
	char failed_env[PATH_MAX + 32], restored_env[PATH_MAX + 32];
	char reason_env[640];
	struct hook_child *h;
	size_t n = 0;
	pid_t pid;

	if (argv == NULL || argv[0] == NULL)
		return;
	for (char **e = environ; *e != NULL && n < 500; e++)
		if (strncmp(*e, "NOTIFY_SOCKET=", 14) != 0)
			envp[n++] = *e;
	snprintf(failed_env, sizeof failed_env, "NARWHAL_FAILED_TREE=%s",
	    failed->tree);
	snprintf(restored_env, sizeof restored_env,
	    "NARWHAL_RESTORED_TREE=%s", restored->tree);
	snprintf(reason_env, sizeof reason_env, "NARWHAL_ROLLBACK_REASON=%s",
	    reason);
	envp[n++] = failed_env;
	envp[n++] = restored_env;
	envp[n++] = reason_env;
	envp[n] = NULL;
	pid = fork();
	if (pid < 0) {
		nw_error("on_rollback: fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		sigset_t none;

		for (int sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(argv[0], argv, envp);
		execvpe(argv[0], argv, envp);
		_exit(127);
	}
	h = nw_calloc(1, sizeof *h);
	h->name = nw_strdup(argv[0]);
	ev_child_init(&h->child, on_hook_exit, pid, 0);
	ev_child_start(m->loop, &h->child);
	nw_info("on_rollback: started %s pid %d", argv[0], (int)pid);
}

static void
state_path(struct nw_master *m, char *buf, size_t len)
{
	snprintf(buf, len, "%s/last-good-tree", m->state_dir);
}

void
nw_state_save_good(struct nw_master *m, struct nw_generation *g)
{
	char path[PATH_MAX], tmp[PATH_MAX + 16];
	FILE *f;

	nw_history_push(m, g);
	if (nw_mkdir_p(m->state_dir, 0700) < 0) {
		nw_warn("state dir %s: %s", m->state_dir, strerror(errno));
		return;
	}
	nw_history_save(m);
	state_path(m, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL) {
		nw_warn("cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f, "%s\n", g->tree);
	/* fsync before rename: after a crash, the old file or the new one. */
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		fclose(f);
		unlink(tmp);
		return;
	}
	fclose(f);
	if (rename(tmp, path) < 0)
		nw_warn("cannot write %s: %s", path, strerror(errno));
}

char *
nw_state_load_good(struct nw_master *m)
{
	char path[PATH_MAX], tree[PATH_MAX], err[768];
	FILE *f;

	state_path(m, path, sizeof path);
	f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	if (nw_path_trusted(m->state_dir, geteuid(), 0, err, sizeof err) < 0) {
		nw_warn("state dir %s: %s; not read", m->state_dir, err);
		fclose(f);
		return NULL;
	}
	if (fgets(tree, sizeof tree, f) == NULL) {
		fclose(f);
		return NULL;
	}
	fclose(f);
	tree[strcspn(tree, "\n")] = '\0';
	return tree[0] ? nw_strdup(tree) : NULL;
}

/*
 * Before the service was ever live there is no old generation to keep. After
 * boot_retries failures, start the last good tree if there is one and it
 * differs; otherwise keep retrying with backoff until the cold deadline.
 */
int
nw_coldstart_exit_plan(struct nw_master *m, struct nw_worker *w)
{
	struct nw_generation *g;
	struct nw_config *config;
	char err[512], *good;

	if (w->live_at > 0 || m->cold_fell_back)
		return 0;
	if (++m->cold_failures <= m->current->config->boot_retries)
		return 0;
	good = nw_state_load_good(m);
	if (good == NULL || strcmp(good, m->current->tree) == 0) {
		free(good);
		return 0;
	}
	/* What a restart would read, on the tree that last worked. */
	config = nw_config_load(m->argc, m->argv, err, sizeof err);
	if (config != NULL && nw_probe_init(m, config, err, sizeof err) < 0) {
		nw_config_free(config);
		config = NULL;
	}
	g = config ? nw_generation_new(m, config, good, err, sizeof err) : NULL;
	if (g == NULL) {
		nw_warn("cannot fall back to %s: %s; retrying %s", good, err,
		    m->current->tree);
		if (config != NULL)
			nw_config_free(config);
		free(good);
		return 0;
	}
	nw_error("generation %u: tree %s does not boot; falling back to the "
		 "last good tree %s as generation %u",
	    m->current->id, m->current->tree, good, g->id);
	free(good);
	m->cold_fell_back = 1;
	nw_generation_release(m, m->current);
	m->current = g;
	m->config = g->config;
	ev_timer_again(m->loop, &m->cold_deadline);
	nw_sd_extend(m);
	return -1;
}

static void
on_cold_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master, cold_deadline);

	ev_timer_stop(loop, t);
	if (m->first_live || m->stopping != NW_RUNNING)
		return;
	if (nw_master_live_count(m, m->current) > 0)
		return; /* serving, if not at full strength: keep going */
	nw_error("no worker became live within boot_timeout %gs of start; "
		 "exiting",
	    m->current->config->boot_timeout);
	m->exit_status = 1;
	nw_master_shutdown(m, NW_STOP_QUICK);
}

void
nw_coldstart_init(struct nw_master *m)
{
	double deadline = m->current->config->boot_timeout;

	ev_timer_init(&m->cold_deadline, on_cold_deadline, deadline, deadline);
	ev_timer_start(m->loop, &m->cold_deadline);
	nw_generation_describe(m, m->current);
}
