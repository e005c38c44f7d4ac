/*
 * watch.c: `--reload`, gunicorn's development mode: inotify on the serving
 * generation's code tree (and reload_extra_files, and the config file), and
 * a normal safe reload once edits pause, so that a syntax error keeps the
 * old workers serving.
 *
 * The inotify fd is one more ev_io on the master's loop; a burst of writes
 * (an editor's save, a git checkout) becomes one reload after WATCH_SETTLE
 * seconds of quiet. It never starts or stops workers itself: it only asks
 * reload.c, as SIGHUP does.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

#define WATCH_SETTLE 0.3
#define WATCH_MAX_DIRS 8192
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | \
	IN_CREATE | IN_DELETE | IN_ONLYDIR)

/* Trees nobody edits by hand: caches, VCS data, virtualenvs. */
static int
skip_dir(const char *parent, const char *name)
{
	char cfg[PATH_MAX];

	if (name[0] == '.' || strcmp(name, "__pycache__") == 0 ||
	    strcmp(name, "node_modules") == 0 ||
	    strcmp(name, "site-packages") == 0)
		return 1;
	snprintf(cfg, sizeof cfg, "%s/%s/pyvenv.cfg", parent, name);
	return access(cfg, F_OK) == 0;
}

static void
remember(struct nw_master *m, int wd, const char *path)
{
	if (wd < 0)
		return;
	if ((size_t)wd >= m->watch.ndirs) {
		size_t n = (size_t)wd + 64;
		char **grown = realloc(m->watch.dirs, n * sizeof *grown);

		if (grown == NULL)
			return;
		memset(grown + m->watch.ndirs, 0,
		    (n - m->watch.ndirs) * sizeof *grown);
		m->watch.dirs = grown;
		m->watch.ndirs = n;
	}
	free(m->watch.dirs[wd]);
	m->watch.dirs[wd] = nw_strdup(path);
}

static void
add_tree(struct nw_master *m, const char *dir, int depth)
{
	struct dirent *e;
	char sub[PATH_MAX];
	DIR *d;
	int wd;

	if (m->watch.count >= WATCH_MAX_DIRS || depth > 32)
		return;
	wd = inotify_add_watch(m->watch.fd, dir, WATCH_MASK);
	if (wd < 0) {
		nw_debug("reload: cannot watch %s: %s", dir, strerror(errno));
		return;
	}
	m->watch.count++;
	remember(m, wd, dir);
	if ((d = opendir(dir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_type != DT_DIR || skip_dir(dir, e->d_name))
			continue;
		snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
		add_tree(m, sub, depth + 1);
	}
	closedir(d);
}

/* A changed file that matters: Python source, or one named in config. */
static int
matters(struct nw_master *m, const char *path)
{
	const struct nw_config *c = m->current->config;
	size_t n = strlen(path);

	if (n > 3 && strcmp(path + n - 3, ".py") == 0)
		return 1;
	if (c->path != NULL && strcmp(c->path, path) == 0)
		return 1;
	for (size_t i = 0; i < c->nreload_extra_files; i++)
		if (strcmp(c->reload_extra_files[i], path) == 0)
			return 1;
	return 0;
}

static void
on_inotify(struct ev_loop *loop, ev_io *io, int revents)
{
	struct nw_master *m = container_of(io, struct nw_master, watch.io);
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	char path[PATH_MAX];
	ssize_t n;

	while ((n = read(m->watch.fd, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;
		     p += sizeof *ev + ev->len) {
			ev = (const struct inotify_event *)p;
			if (ev->wd < 0 || (size_t)ev->wd >= m->watch.ndirs ||
			    m->watch.dirs[ev->wd] == NULL || ev->len == 0)
				continue;
			snprintf(path, sizeof path, "%s/%s",
			    m->watch.dirs[ev->wd], ev->name);
			if ((ev->mask & IN_ISDIR) && (ev->mask & IN_CREATE) &&
			    !skip_dir(m->watch.dirs[ev->wd], ev->name)) {
				add_tree(m, path, 0);
				continue;
			}
			if (!matters(m, path))
				continue;
			if (m->watch.changed[0] == '\0')
				snprintf(m->watch.changed,
				    sizeof m->watch.changed, "%.*s",
				    (int)sizeof m->watch.changed - 1, path);
			/* Wait for the burst to end. */
			ev_timer_stop(loop, &m->watch.settle);
			ev_timer_set(&m->watch.settle, WATCH_SETTLE, 0.);
			ev_timer_start(loop, &m->watch.settle);
		}
	}
}

static void
on_settled(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master, watch.settle);
	char why[sizeof m->watch.changed + 32];

	snprintf(why, sizeof why, "--reload: %s changed", m->watch.changed);
	m->watch.changed[0] = '\0';
	nw_reload_request(m, why);
}

void
nw_watch_close(struct nw_master *m)
{
	if (m->watch.fd < 0)
		return;
	ev_io_stop(m->loop, &m->watch.io);
	ev_timer_stop(m->loop, &m->watch.settle);
	close(m->watch.fd);
	m->watch.fd = -1;
	for (size_t i = 0; i < m->watch.ndirs; i++)
		free(m->watch.dirs[i]);
	free(m->watch.dirs);
	m->watch.dirs = NULL;
	m->watch.ndirs = 0;
	m->watch.count = 0;
	free(m->watch.tree);
	m->watch.tree = NULL;
}

/* Watches what the serving generation needs; call after it changes. */
void
nw_watch_sync(struct nw_master *m)
{
	const struct nw_config *c = m->current->config;
	char *dir;

	if (!c->reload) {
		nw_watch_close(m);
		return;
	}
	if (m->watch.fd >= 0 && strcmp(m->watch.tree, m->current->tree) == 0)
		return;
	nw_watch_close(m);
	m->watch.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (m->watch.fd < 0) {
		nw_warn("reload: inotify: %s; files are not watched",
		    strerror(errno));
		return;
	}
	m->watch.tree = nw_strdup(m->current->tree);
	add_tree(m, m->watch.tree, 0);
	for (size_t i = 0; i <= c->nreload_extra_files; i++) {
		const char *f = i < c->nreload_extra_files ?
		    c->reload_extra_files[i] : c->path;

		if (f == NULL || strncmp(f, "python:", 7) == 0 ||
		    (dir = strdup(f)) == NULL)
			continue;
		if (strrchr(dir, '/') != NULL && strrchr(dir, '/') != dir)
			*strrchr(dir, '/') = '\0';
		remember(m, inotify_add_watch(m->watch.fd, dir, WATCH_MASK),
		    dir);
		free(dir);
	}
	ev_io_init(&m->watch.io, on_inotify, m->watch.fd, EV_READ);
	ev_io_start(m->loop, &m->watch.io);
	nw_info("reload: watching %zu directories under %s (development "
	    "mode)", m->watch.count, m->watch.tree);
}

void
nw_watch_init(struct nw_master *m)
{
	m->watch.fd = -1;
	ev_timer_init(&m->watch.settle, on_settled, 0., 0.);
	nw_watch_sync(m);
}
