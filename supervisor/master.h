/*
 * master.h: the master's state, in one struct, and the interfaces between the
 * master's files.
 *
 * Everything mutable the master has lives in struct nw_master (the log's
 * destination aside, see log.c). Watchers are embedded in the objects they
 * serve and found again with container_of.
 */
#ifndef NW_MASTER_H
#define NW_MASTER_H

#include <stddef.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <ev.h>

#include "config.h"

#define NW_VERSION "0.1.0"

#define container_of(ptr, type, member)                                        \
	((type *)((char *)(ptr)-offsetof(type, member)))

/* How many stderr lines of a worker are kept for a failure report. */
#define NW_STDERR_KEEP 20

enum nw_worker_state {
	NW_SPAWNED,  /* exec'd, importing the app */
	NW_BOOTED,   /* app imported, private socket served */
	NW_PROBING,  /* ready_path being requested */
	NW_LIVE,     /* accepting public traffic: counts as capacity */
	NW_RETIRING, /* wants a replacement; serves until it is live */
	NW_STOPPING, /* sent TERM (or worse), draining */
	NW_EXITED,   /* reaped */
	NW_BACKOFF,  /* crashed; the slot waits to respawn */
};

enum nw_worker_event {
	NW_EV_SPAWNED,        /* fork+exec done */
	NW_EV_SPAWN_FAILED,   /* no process: boot_failure says why */
	NW_EV_BOOTED,         /* said `booted` */
	NW_EV_PROBE_OK,       /* passed the gate (why: how, when waived) */
	NW_EV_PROBE_FAILED,   /* reconcile gave up on its probe answers */
	NW_EV_RETIRE,         /* said `retire`, or outlived its limits */
	NW_EV_STOP,           /* the master wants it gone, gracefully */
	NW_EV_KILL,           /* the master wants it gone now */
	NW_EV_EXITED,         /* reaped by ev_child */
	NW_EV_BOOT_TIMEOUT,   /* not live within boot_timeout */
	NW_EV_HANG,           /* no heartbeat within timeout */
	NW_EV_TIMER,          /* the state's own timer: kill, respawn */
};

/* Buckets of the heartbeat's `lat=`; upper bounds in metrics.c. */
#define NW_LAT_BUCKETS 12

/*
 * What workers counted: one worker's cumulative values from its last
 * heartbeat, or a sum of such. The wire format is in metrics.c.
 */
struct nw_counters {
	unsigned long long requests;  /* answers finished (`hb <served>`) */
	unsigned long long status[6]; /* [1]..[5]: 1xx..5xx; [0] unused */
	unsigned long long s500, s502, s503, s504; /* also in status[5] */
	unsigned long long lat[NW_LAT_BUCKETS]; /* per bucket, not cumulative */
	unsigned long long latsum_us; /* sum of the durations */
	unsigned long long bytes;     /* sent */
};

/* Why a worker was replaced, for narwhal_worker_restarts_total. */
enum nw_restart_cause {
	NW_RESTART_NONE,      /* not a restart: reload, shutdown, fewer workers */
	NW_RESTART_RECYCLED,  /* max_requests */
	NW_RESTART_LIFETIME,  /* max_worker_lifetime */
	NW_RESTART_MEMORY,    /* max_worker_memory */
	NW_RESTART_CRASHED,   /* died on its own after going live */
	NW_RESTART_TIMED_OUT, /* missed its heartbeats: SIGABRT */
	NW_RESTART_BOOT,      /* died or hung before going live */
	NW_RESTART_CAUSES
};

/* A config snapshot and the code tree it resolved to. */
struct nw_generation {
	unsigned id;
	struct nw_config *config;
	char *tree;        /* realpath of config->chdir when created */
	char *link_target; /* readlink(chdir) when chdir is a symlink */
	char *worktree;    /* a git work tree in place: its top, else NULL */
	char *commit;      /* ... and the commit tree is a snapshot of */
	int refs;          /* workers and master pointers holding it */
	struct nw_counters exited; /* its exited workers' last counts */
	TAILQ_ENTRY(nw_generation) entry;
};

struct nw_probe;

/* Bounds of what is kept of a probe's answer, for reports. */
#define NW_PROBE_BODY_KEEP 160

/* What a worker's last probe (or one-off check) got back. */
struct nw_probe_result {
	char path[NW_URLPATH_MAX + 1]; /* what was requested */
	char host[NW_READY_HOST_MAX + 1]; /* ...with this Host header */
	long status;                 /* HTTP status; 0: no answer */
	char body[NW_PROBE_BODY_KEEP]; /* start of the body, printable */
	char error[96];              /* no answer: why (timeout, refused) */
	double at;                   /* ev_now() of the answer, 0: none yet */
};

enum nw_check {
	NW_CHECK_NONE,    /* never checked */
	NW_CHECK_PENDING, /* a one-off probe of a serving worker is out */
	NW_CHECK_PASSED,
	NW_CHECK_FAILED,
};

struct nw_worker {
	unsigned id;                 /* log name; kept across crash respawns */
	pid_t pid;                   /* 0 while in backoff */
	enum nw_worker_state state;
	struct nw_generation *gen;
	struct nw_worker *replaces;  /* retiring worker this one will relieve */
	struct nw_worker *replaced_by;

	int control_fd;              /* SOCK_SEQPACKET to the worker */
	ev_io control_io;
	int stderr_fd;               /* the worker's stderr pipe */
	ev_io stderr_io;
	char stderr_partial[1024];   /* a line not yet ended */
	size_t stderr_partial_len;
	char *stderr_last[NW_STDERR_KEEP]; /* the last lines, oldest first */
	unsigned char stderr_spare[NW_STDERR_KEEP]; /* ... the first to go */
	unsigned stderr_kept;
	int stderr_dump;             /* 0, or in a fatal error's dump: 1 in a
	                                section kept, 2 in one that is spare */
	char private_path[108];      /* its own Unix socket: health checks */
	ev_child child;
	ev_timer timer;              /* boot deadline, kill or respawn */
	ev_timer watchdog;           /* heartbeat deadline while serving */
	struct nw_probe *probe;      /* the gate while booting, a check later */
	struct nw_probe_result probe_last;
	int probe_failures;          /* failing answers in a row */
	int probe_gave_up;           /* failures reached ready_failures */
	enum nw_check check;         /* one-off probe while serving */

	double spawned_at;           /* ev_now() */
	double booted_at;
	double live_at;
	unsigned long requests;      /* from the last heartbeat */
	unsigned slot;               /* its place in the generation: a label */
	struct nw_counters counted;  /* cumulative, from the last heartbeat */
	unsigned inflight;           /* requests in progress at that heartbeat */
	unsigned websockets;         /* open at that heartbeat */
	int reports_counters;        /* its heartbeats carry key=value counts */
	enum nw_restart_cause retire_cause; /* why it was asked to retire */
	unsigned long budget;        /* max_requests drawn for it, 0: none */
	double lifetime;             /* max_worker_lifetime drawn, 0: none */
	int crashes;                 /* consecutive quick deaths: backoff */
	int hung;                    /* SIGABRT sent by the watchdog */
	int exit_status;             /* from waitpid, for the log and reports */
	int was_stopped;             /* exited after the master asked it to */
	int spawn_failed;            /* never ran: nw_spawn() failed */
	int low_priority;            /* booting at boot_priority: raise it */
	long long queued_ns;         /* ... its run-queue wait (ns) at the
	                                last check: starved, it is raised */
	char boot_failure[384];      /* why it failed to boot, if it did */
	TAILQ_ENTRY(nw_worker) entry;
};

TAILQ_HEAD(nw_worker_list, nw_worker);
TAILQ_HEAD(nw_generation_list, nw_generation);

struct nw_listener {
	int fd;
	char *name; /* as printed: http://127.0.0.1:8000, unix:/path */
	char *bind; /* the bind entry it serves */
	char *unix_path; /* to unlink at exit, when we created it */
};

struct nw_control_client;
TAILQ_HEAD(nw_client_list, nw_control_client);

/* The libcurl functions probe.c calls, found by curl_lib.c at run time. */
struct nw_libcurl {
	void *handle; /* from dlopen; NULL until a config has ready_path */
	CURLcode (*global_init)(long flags);
	void (*global_cleanup)(void);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_setopt)(CURLM *multi, CURLMoption option, ...);
	CURLMcode (*multi_socket_action)(CURLM *multi, curl_socket_t s,
	    int ev_bitmask, int *running_handles);
	CURLMsg *(*multi_info_read)(CURLM *multi, int *msgs_in_queue);
	CURLMcode (*multi_add_handle)(CURLM *multi, CURL *easy);
	CURLMcode (*multi_remove_handle)(CURLM *multi, CURL *easy);
	CURLMcode (*multi_assign)(CURLM *multi, curl_socket_t s, void *p);
	CURLMcode (*multi_cleanup)(CURLM *multi);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *easy, CURLoption option, ...);
	CURLcode (*easy_getinfo)(CURL *easy, CURLINFO info, ...);
	void (*easy_cleanup)(CURL *easy);
	const char *(*easy_strerror)(CURLcode code);
	struct curl_slist *(*slist_append)(struct curl_slist *list,
	    const char *string);
	void (*slist_free_all)(struct curl_slist *list);
};

enum nw_reload_outcome {
	NW_RELOAD_NONE,
	NW_RELOAD_OK,
	NW_RELOAD_INVALID_CONFIG,
	NW_RELOAD_ROLLED_BACK,
	NW_RELOAD_DEPENDENCY,  /* rolled back; the old generation fails too */
	NW_RELOAD_WATCH_ROLLED_BACK, /* live, then worse than the old one */
	NW_RELOAD_OUTCOMES
};

/* What made narwhal go back to a previous tree. */
enum nw_rollback_trigger {
	NW_ROLLBACK_BOOT,   /* the new generation never became healthy */
	NW_ROLLBACK_WATCH,  /* its 5xx ratio was clearly worse */
	NW_ROLLBACK_MANUAL, /* `narwhal rollback` */
	NW_ROLLBACK_TRIGGERS
};

/* Counters of the master itself, and what exited workers left behind. */
struct nw_metrics {
	struct nw_counters exited;   /* every exited worker's last counts */
	unsigned long long restarts[NW_RESTART_CAUSES];
	unsigned long long reloads[NW_RELOAD_OUTCOMES];
	unsigned long long rollbacks[NW_ROLLBACK_TRIGGERS];
	int rollback_manual;         /* the running reload is a rollback */
	int rollback_watched;        /* ... asked for by postlive.c */
};

struct nw_metrics_client;
TAILQ_HEAD(nw_metrics_client_list, nw_metrics_client);

/* metrics_bind: GET /metrics served from the loop. */
struct nw_prometheus {
	int fd;                      /* listening; -1 when off */
	ev_io accept_io;
	char *bind;                  /* as configured, to notice a change */
	char *unix_path;             /* to unlink at exit */
	struct nw_metrics_client_list clients;
	int nclients;                /* at most NW_METRICS_CLIENTS */
	unsigned long long scrapes;  /* answered, for narwhal_scrapes_total */
};

/* statsd_host: gunicorn's metric names from heartbeat deltas, over UDP. */
struct nw_statsd {
	int fd;                      /* connected UDP socket; -1 when off */
	char *host;                  /* as configured, to notice a change */
	char prefix[128];            /* statsd_prefix with one trailing dot */
	struct nw_counters pending;  /* deltas not sent yet */
	ev_timer flush;              /* every metrics_interval */
	unsigned long long dropped;  /* datagrams the kernel refused */
};

/* The whole new generation, watched for a window after the switch. */
struct nw_postlive {
	struct nw_generation *gen;   /* held while watched; NULL when not */
	unsigned old_id;             /* the generation it replaced */
	struct nw_counters old;      /* that one's last window */
	struct nw_counters base;     /* gen's totals at the switch */
	ev_timer window;             /* watch_window from the switch */
	char verdict[256];           /* the last judgement, for the log */
};

/* The watch after go-live: one canary of the new generation, judged. */
struct nw_canary {
	struct nw_generation *gen;   /* being watched; NULL when not */
	double started_at;           /* canary went live: the window opens */
	int heartbeats;              /* canary's since then; 1: based */
	struct nw_counters old_base; /* old generation's totals when based */
	struct nw_counters can_base; /* the canary's, when based */
	int passed;                  /* the rest of the generation may follow */
	ev_timer window;             /* watch_window from started_at */
	char verdict[256];           /* the last judgement, for status */
	char failure[320];           /* condemned: the reconcile rolls back */
};

/* The last generations that went fully live, for `narwhal rollback`. */
#define NW_GOOD_KEEP 8
struct nw_good_tree {
	char *tree;                  /* realpath */
	char *link_target;           /* what chdir pointed at, if a link */
};

struct nw_reload {
	struct nw_generation *gen; /* the generation being started */
	double started_at;
	int failures;              /* boot failures so far */
	int failed;                /* failures > boot_retries: abort */
	char failure[512];         /* the last failure, for the report */
	char failure_probe[512];   /* its worker's last probe answer */
	char *failure_stderr;      /* its worker's last stderr lines */
	int old_checked;           /* the old generation's workers probed */
	int old_target;            /* workers to go back to on failure */
	int done_live;             /* all workers live; waiting for min_uptime */
	ev_timer settle;           /* min_uptime after the last went live */
};

enum nw_stop { NW_RUNNING, NW_STOP_GRACEFUL, NW_STOP_QUICK };

struct nw_master {
	struct ev_loop *loop;
	int argc;                      /* kept to re-read the flags on HUP */
	char **argv;
	struct nw_config *config;      /* of the current generation */
	char *runtime_dir;
	char *state_dir;

	struct nw_listener *listeners;
	size_t nlisteners;

	struct nw_generation_list generations;
	struct nw_generation *current; /* serving */
	struct nw_reload reload;       /* reload.gen != NULL while reloading */
	int reload_pending;            /* HUPs merged while one runs */
	unsigned next_generation_id;
	struct nw_worker_list workers;
	unsigned next_worker_id;
	int target;                    /* workers, moved by TTIN/TTOU */
	int first_live;                /* the first generation went live */
	int cold_failures;             /* boot failures before first_live */
	int cold_fell_back;            /* started the last good tree instead */
	ev_timer cold_deadline;        /* boot_timeout for the first start */
	char *shim_dir;                /* holds narwhal_worker/ */

	/* last reload, for status and waiting clients */
	enum nw_reload_outcome last_outcome;
	char last_reason[512];
	char *last_stderr;             /* failed worker's last lines */
	char last_probe[512];          /* failed worker's last probe answer */
	char recycle_held[256];        /* why replacements do not come up */
	double last_reload_at;
	unsigned long reloads_finished;

	enum nw_stop stopping;
	int exit_status;

	ev_signal sig_hup, sig_term, sig_int, sig_quit, sig_ttin, sig_ttou,
	    sig_usr1, sig_usr2;
	ev_prepare reconcile_prepare; /* reconcile once per loop iteration */
	int dirty;                    /* something changed since */
	unsigned requests;            /* from signals, see master.c */
	int more_workers, fewer_workers; /* TTIN and TTOU not yet acted on */
	ev_timer stop_deadline;
	ev_timer memory_check;        /* max_worker_memory, lifetime */

	int control_fd;
	char *control_path;
	ev_io control_io;
	ev_timer control_retry;        /* accept() paused after EMFILE */
	struct nw_client_list clients;
	int nclients;
	int clients_max;               /* see control.c */

	struct nw_libcurl libcurl;     /* loaded with the first ready_path */
	CURLM *curl;                   /* NULL until then */
	ev_timer curl_timer;

	struct nw_metrics metrics;     /* counters, see metrics.c */
	struct nw_prometheus prom;     /* metrics_bind, see prometheus.c */
	struct nw_statsd statsd;       /* statsd_host, see statsd.c */
	struct nw_canary canary;       /* the watch after go-live, canary.c */
	struct nw_postlive postlive;   /* ...and after the switch, postlive.c */
	struct nw_good_tree good[NW_GOOD_KEEP]; /* oldest first */
	int ngood;                     /* entries used in good[] */
	char *reload_tree;             /* next reload's tree, not chdir's */
	char *rollback_undo;           /* chdir's link before `rollback` moved it */
	struct {
		int fd;                /* inotify; -1: --reload is off */
		ev_io io;
		ev_timer settle;       /* quiet time before the reload */
		char **dirs;           /* watch descriptor -> directory */
		size_t ndirs;
		size_t count;          /* directories watched */
		char *tree;            /* the code tree being watched */
		char changed[512];     /* first file changed since */
	} watch;                       /* --reload (watch.c) */

	ev_timer sd_watchdog;
	int sd_notify;                 /* NOTIFY_SOCKET is set */
	char sd_status[512];           /* last STATUS= sent */
};

/* worker.c: the lifecycle, one transition function */
const char *nw_worker_state_name(enum nw_worker_state state);
/* why: a few words for the log line, or NULL. */
void nw_worker_event(struct nw_master *m, struct nw_worker *w,
    enum nw_worker_event ev, const char *why);
void nw_worker_free(struct nw_master *m, struct nw_worker *w);
/* The reconcile step's answer to an exit: respawn after that many seconds
 * (the slot waits in backoff), or < 0 to drop the worker. */
void nw_worker_settle(struct nw_master *m, struct nw_worker *w,
    double respawn);
int nw_worker_is_booting(const struct nw_worker *w);
/* The probe's last answer in a few words: `GET /x answered 503: body`. */
const char *nw_worker_probe_text(const struct nw_worker *w, char *buf,
    size_t len);
struct nw_worker *nw_worker_new(struct nw_master *m,
    struct nw_generation *gen, struct nw_worker *replaces);
int nw_worker_counts_as_capacity(const struct nw_worker *w);
void nw_worker_send(struct nw_worker *w, const char *msg);
const char *nw_worker_last_stderr(struct nw_worker *w, char *buf,
    size_t len);

/* spawn.c: fork+exec of one worker */
/* On failure, -1 and w->boot_failure says why. */
int nw_spawn(struct nw_master *m, struct nw_worker *w);
void nw_spawn_close_fds(struct nw_master *m, struct nw_worker *w);
/* Back to the master's own CPU priority, after booting at a low one. */
void nw_spawn_raise_priority(struct nw_master *m, struct nw_worker *w);

/* supervise.c: decides what to start and stop */
void nw_supervise_init(struct nw_master *m);
void nw_supervise_mark(struct nw_master *m);
void nw_supervise_reconcile(struct nw_master *m);
/* After an exit: seconds until the slot respawns, or -1 to drop it. */
double nw_supervise_exit_plan(struct nw_master *m, struct nw_worker *w);
/* The exponential backoff of a slot after its nth quick death. */
double nw_supervise_backoff(int crashes);
/* The backoff part of it, at time now; updates w->crashes. */
double nw_supervise_respawn_delay(struct nw_worker *w, double now);
unsigned long nw_supervise_draw_budget(const struct nw_config *config,
    unsigned long random_value);

/* generation.c */
/* tree: NULL to resolve config->chdir now. Takes config on success. */
struct nw_generation *nw_generation_new(struct nw_master *m,
    struct nw_config *config, const char *tree, char *err, size_t errlen);
void nw_generation_hold(struct nw_generation *g);
void nw_generation_release(struct nw_master *m, struct nw_generation *g);
/* One log line on the tree's layout; a warning for a plain directory. */
void nw_generation_describe(struct nw_master *m, struct nw_generation *g);
int nw_generation_is_plain(const struct nw_generation *g);

/* tree.c: code tree layouts, git snapshots */
/* 0 when tree is the top of a git work tree (walk_up: or below it): the
 * top, and the path below it. */
int nw_tree_find_git(const char *tree, int walk_up, char *top, size_t toplen,
    const char **prefix);
int nw_tree_head(const char *worktree, char *commit, size_t len, char *err,
    size_t errlen);
int nw_tree_dirty(const char *worktree);
int nw_tree_snapshot(struct nw_master *m, const char *worktree,
    const char *commit, char *path, size_t pathlen, char *err,
    size_t errlen);
int nw_tree_revert(const char *worktree, const char *failed,
    const char *good, char *note, size_t notelen);
void nw_tree_remove(const char *path);
void nw_tree_prune(struct nw_master *m);

/* reload.c */
void nw_reload_request(struct nw_master *m, const char *why);
void nw_reload_step(struct nw_master *m);
/* A worker of the generation being started exited on its own. */
double nw_reload_exit_plan(struct nw_master *m, struct nw_worker *w);
void nw_reload_init(struct nw_master *m);
/* Ends the running reload as failed: the current generation stays. */
void nw_reload_abort(struct nw_master *m, const char *why,
    enum nw_reload_outcome outcome);
/* A new worker failed its probe: ask the old generation the same. */
void nw_reload_check_old(struct nw_master *m);

/* rollback.c: undoing a failed deploy, remembering the last good one */
void nw_rollback_tree(struct nw_master *m, struct nw_generation *failed,
    struct nw_generation *restored, char *note, size_t notelen);
void nw_rollback_hook(struct nw_master *m, struct nw_generation *failed,
    struct nw_generation *restored, const char *reason);
void nw_state_save_good(struct nw_master *m, struct nw_generation *g);
char *nw_state_load_good(struct nw_master *m);
/* A first-generation worker failed before the service was ever live. */
int nw_coldstart_exit_plan(struct nw_master *m, struct nw_worker *w);
void nw_coldstart_init(struct nw_master *m);

/* metrics.c: the workers' counters, added up */
extern const double nw_lat_bounds[NW_LAT_BUCKETS]; /* last: +Inf */
int nw_metrics_parse_hb(const char *msg, struct nw_counters *out,
    unsigned *inflight, unsigned *ws);
void nw_metrics_heartbeat(struct nw_master *m, struct nw_worker *w,
    const char *msg);
void nw_metrics_worker_exited(struct nw_master *m, struct nw_worker *w);
void nw_metrics_add(struct nw_counters *sum, const struct nw_counters *c);
void nw_metrics_sub(struct nw_counters *out, const struct nw_counters *a,
    const struct nw_counters *b);
/* g: one generation's totals, exited workers included; NULL: all. */
void nw_metrics_sum(struct nw_master *m, struct nw_generation *g,
    struct nw_counters *out);
void nw_metrics_load(struct nw_master *m, struct nw_generation *g,
    unsigned *inflight, int *busy, int *idle);
unsigned nw_metrics_slot(struct nw_master *m, struct nw_generation *g,
    const struct nw_worker *replaces);
void nw_metrics_reload_finished(struct nw_master *m);
double nw_metrics_ratio(const struct nw_counters *c);
const char *nw_restart_cause_name(enum nw_restart_cause cause);

/* prometheus.c: GET /metrics on metrics_bind */
int nw_prometheus_open(struct nw_master *m);
void nw_prometheus_close(struct nw_master *m);
char *nw_prometheus_render(struct nw_master *m, size_t *len);

/* statsd.c: gunicorn's statsd names from heartbeat deltas */
int nw_statsd_open(struct nw_master *m);
void nw_statsd_close(struct nw_master *m);
void nw_statsd_add(struct nw_master *m, const struct nw_counters *delta);
void nw_statsd_flush(struct nw_master *m);

/* canary.c: the watch after go-live, a canary judged on its 5xx ratio */
int nw_canary_verdict(const struct nw_counters *old,
    const struct nw_counters *canary, long min_requests, double margin,
    char *why, size_t whylen);
int nw_canary_slot_limit(struct nw_master *m, struct nw_generation *g);
int nw_canary_holds_back(struct nw_master *m, const struct nw_worker *w);
void nw_canary_step(struct nw_master *m);
void nw_canary_heartbeat(struct nw_master *m, struct nw_worker *w);
void nw_canary_reload_finished(struct nw_master *m);
int nw_canary_active(struct nw_master *m);
void nw_canary_init(struct nw_master *m);

/* postlive.c: the whole generation, after the switch */
void nw_postlive_start(struct nw_master *m, struct nw_generation *g);
void nw_postlive_heartbeat(struct nw_master *m, struct nw_worker *w);
int nw_postlive_active(const struct nw_master *m);
void nw_postlive_init(struct nw_master *m);
void nw_postlive_free(struct nw_master *m);

/* history.c: the last good trees, `narwhal rollback` */
void nw_history_push(struct nw_master *m, struct nw_generation *g);
void nw_history_save(struct nw_master *m);
void nw_history_load(struct nw_master *m);
int nw_history_rollback(struct nw_master *m, const char *cause, char *why,
    size_t whylen);
void nw_history_reload_finished(struct nw_master *m);
void nw_history_free(struct nw_master *m);
/* hooks.c: gunicorn's master-side server hooks, in a helper process */
int nw_hook_defined(const struct nw_config *c, const char *hook);
/* args: "name=value" strings for the hook's stand-ins, NULL-terminated */
void nw_hook_call(struct nw_master *m, const char *hook,
    const char *const *args);
void nw_hook_call_wait(struct nw_master *m, const char *hook);
void nw_hook_worker_gone(struct nw_master *m, struct nw_worker *w);
void nw_hook_nworkers_changed(struct nw_master *m, int new_value,
    int old_value);

/* watch.c: --reload, inotify on the code tree */
void nw_watch_init(struct nw_master *m);
void nw_watch_sync(struct nw_master *m);
void nw_watch_close(struct nw_master *m);

/* probe.c: libcurl multi on the libev loop */
/* Readies probes for config, loading libcurl when it first needs it. */
int nw_probe_init(struct nw_master *m, const struct nw_config *config,
    char *err, size_t errlen);
void nw_probe_start(struct nw_master *m, struct nw_worker *w);
/* One request to a serving worker with gen's gate; w->check tells. */
void nw_probe_check(struct nw_master *m, struct nw_worker *w,
    struct nw_generation *gen);
/* The path gen's gate requests, or NULL when it has none. */
const char *nw_probe_path(const struct nw_config *config);
/* Pure helpers, for the unit tests too. */
int nw_probe_parse(char *buf, size_t len, long *status, const char **body,
    size_t *bodylen);
void nw_probe_keep_body(char *out, size_t outlen, const char *body,
    size_t len);
void nw_probe_stop(struct nw_master *m, struct nw_worker *w);
void nw_probe_cleanup(struct nw_master *m);

/* curl_lib.c: libcurl, loaded only for a config with ready_path */
int nw_libcurl_load(struct nw_libcurl *lib, char *err, size_t errlen);

/* listen.c */
int nw_listen_open(struct nw_master *m, const struct nw_config *config);
int nw_listen_match(struct nw_master *m, const struct nw_config *config,
    char *err, size_t errlen);
void nw_listen_close(struct nw_master *m);
int nw_unix_listen(const char *path, int backlog);

/* control.c: the control socket, server side */
int nw_control_open(struct nw_master *m);
void nw_control_close(struct nw_master *m);
void nw_control_reload_finished(struct nw_master *m);
void nw_control_watching(struct nw_master *m, const char *what);
void nw_control_progress(struct nw_master *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* client.c: `narwhal reload` and `narwhal status` */
int nw_client_main(int argc, char **argv);

/* sdnotify.c */
void nw_sd_init(struct nw_master *m);
void nw_sd_ready(struct nw_master *m);
void nw_sd_reloading(struct nw_master *m);
void nw_sd_stopping(struct nw_master *m);
void nw_sd_extend(struct nw_master *m);
void nw_sd_status(struct nw_master *m);

/* master.c */
int nw_master_run(int argc, char **argv, struct nw_config *config);
char *nw_find_shim_dir(void);

/* check.c: `narwhal --check-app`, importing the app once, serving nothing */
int nw_check_app(const struct nw_config *config);
int nw_master_live_count(struct nw_master *m, struct nw_generation *g);
void nw_master_shutdown(struct nw_master *m, enum nw_stop how);

/* util.c */
char *nw_strdup(const char *s);
void *nw_calloc(size_t n, size_t size);
int nw_mkdir_p(const char *path, mode_t mode);
/* 0 if only owner or root can change dir and every directory above it
 * (sticky_ok: dir itself may be sticky and writable by all, as /tmp is);
 * else -1 and why in err. */
int nw_path_trusted(const char *dir, uid_t owner, int sticky_ok, char *err,
    size_t errlen);
long long nw_proc_rss(pid_t pid);
long long nw_proc_queued_ns(pid_t pid);
int nw_set_cloexec(int fd, int on);

#endif
