/*
 * test_worker.c: the worker lifecycle (worker.c) and the respawn backoff
 * (supervise.c), without processes. Events are fed to
 * nw_worker_event() on a master with a loop that never runs; no worker has a
 * pid, so no signal is ever sent. The transition must be a leaf: an exit is
 * recorded and nothing else, whatever generation the worker belongs to.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "master.h"
#include "tap.h"

static struct nw_master master;
static struct nw_config config;

static struct nw_master *
fresh_master(void)
{
	struct nw_master *m = &master;
	char err[256];

	memset(m, 0, sizeof *m);
	memset(&config, 0, sizeof config);
	config.chdir = "/";
	config.boot_timeout = 60;
	config.graceful_timeout = 30;
	config.timeout = 30;
	config.ready_interval = 0.5;
	config.ready_successes = 1;
	config.ready_failures = 5;
	config.boot_retries = 1;
	m->loop = ev_default_loop(0);
	ev_set_userdata(m->loop, m);
	TAILQ_INIT(&m->generations);
	TAILQ_INIT(&m->workers);
	TAILQ_INIT(&m->clients);
	m->current = nw_generation_new(m, &config, "/", err, sizeof err);
	m->config = &config;
	m->target = 1;
	m->first_live = 1;
	return m;
}

static void
drop_master(struct nw_master *m)
{
	struct nw_worker *w;

	while ((w = TAILQ_FIRST(&m->workers)) != NULL)
		nw_worker_free(m, w);
	/* config is static: free the generation by hand, not its config. */
	TAILQ_REMOVE(&m->generations, m->current, entry);
	free(m->current->tree);
	free(m->current->link_target);
	free(m->current);
}

static const char *
state(const struct nw_worker *w)
{
	return nw_worker_state_name(w->state);
}

static void
lifecycle_without_probe(void)
{
	struct nw_master *m = fresh_master();
	struct nw_worker *w = nw_worker_new(m, m->current, NULL);

	is_str(state(w), "backoff", "a new worker has no process yet");
	nw_worker_event(m, w, NW_EV_BOOTED, NULL);
	is_str(state(w), "backoff", "booted before spawned: ignored");
	nw_worker_event(m, w, NW_EV_SPAWNED, NULL);
	is_str(state(w), "spawned", "spawned");
	ok(ev_is_active(&w->timer), "the boot deadline runs");
	nw_worker_event(m, w, NW_EV_BOOTED, NULL);
	is_str(state(w), "live", "no ready_path, no warm-up: booted is live");
	ok(nw_worker_counts_as_capacity(w), "live counts as capacity");
	ok(!ev_is_active(&w->timer), "no boot deadline once live");
	ok(ev_is_active(&w->watchdog), "the heartbeat watchdog runs");
	nw_worker_event(m, w, NW_EV_PROBE_OK, NULL);
	is_str(state(w), "live", "probe ok while live: ignored");
	nw_worker_event(m, w, NW_EV_RETIRE, "max_requests 5 reached");
	is_str(state(w), "retiring", "retire");
	ok(nw_worker_counts_as_capacity(w), "retiring still serves");
	nw_worker_event(m, w, NW_EV_STOP, "replaced by worker 2");
	is_str(state(w), "stopping", "stop");
	ok(w->was_stopped, "the master asked for it");
	ok(!nw_worker_counts_as_capacity(w), "stopping is no capacity");
	nw_worker_event(m, w, NW_EV_STOP, "again");
	is_str(state(w), "stopping", "a second stop changes nothing");
	m->dirty = 0;
	nw_worker_event(m, w, NW_EV_EXITED, NULL);
	is_str(state(w), "exited", "exited: recorded");
	ok(m->dirty, "and the reconcile step is due");
	ok(TAILQ_FIRST(&m->workers) == w, "still in the table until settled");
	nw_worker_settle(m, w, -1);
	ok(TAILQ_EMPTY(&m->workers), "settled with no respawn: gone");
	drop_master(m);
}

static void
exit_is_a_leaf_during_a_reload(void)
{
	struct nw_master *m = fresh_master();
	struct nw_worker *w;
	char err[256];

	m->reload.gen = nw_generation_new(m, &config, "/", err, sizeof err);
	m->last_outcome = NW_RELOAD_NONE;
	w = nw_worker_new(m, m->reload.gen, NULL);
	nw_worker_event(m, w, NW_EV_SPAWNED, "reload");
	nw_worker_event(m, w, NW_EV_EXITED, NULL);
	is_str(state(w), "exited", "a new worker exits while booting");
	ok(strstr(w->boot_failure, "while spawned") != NULL,
	    "its failure is recorded: %s", w->boot_failure);
	is_int(m->reload.failures, 0, "no failure counted by the transition");
	ok(!m->reload.failed, "the reload is not judged by the transition");
	is_int(m->last_outcome, NW_RELOAD_NONE, "no outcome, no answer");
	ok(m->reload.gen != NULL, "the reload still runs");
	/* The reconcile step's side: the exit plan counts and decides. */
	is_double(nw_supervise_exit_plan(m, w), 0.5,
	    "first failure: retried (boot_retries 1)");
	is_int(m->reload.failures, 1, "one failure counted");
	w->state = NW_EXITED;
	ok(nw_supervise_exit_plan(m, w) < 0, "second failure: no retry");
	ok(m->reload.failed, "the reload is marked failed");
	ok(strstr(m->reload.failure, "worker") != NULL, "with a reason: %s",
	    m->reload.failure);
	ok(m->reload.gen != NULL,
	    "and is only ended by nw_reload_step, not by the exit plan");
	nw_worker_settle(m, w, -1);
	TAILQ_REMOVE(&m->generations, m->reload.gen, entry);
	free(m->reload.gen->tree);
	free(m->reload.gen);
	m->reload.gen = NULL;
	drop_master(m);
}

static void
boot_failures(void)
{
	struct nw_master *m = fresh_master();
	struct nw_worker *w = nw_worker_new(m, m->current, NULL);

	nw_worker_event(m, w, NW_EV_SPAWNED, NULL);
	nw_worker_event(m, w, NW_EV_TIMER, NULL);
	is_str(state(w), "stopping", "boot deadline: stopped");
	ok(!w->was_stopped, "as a failure, not a decision");
	ok(strstr(w->boot_failure, "not live within boot_timeout 60s "
			"(spawned)") != NULL,
	    "the reason names the state: %s", w->boot_failure);
	nw_worker_event(m, w, NW_EV_EXITED, NULL);
	nw_worker_settle(m, w, 2);
	is_str(state(w), "backoff", "settled with a respawn: backoff");
	ok(ev_is_active(&w->timer), "its respawn timer runs");
	is_str(w->boot_failure, "", "a respawn starts with a clean record");

	strcpy(w->boot_failure, "cannot spawn: user 'wwwdata' does not exist");
	nw_worker_event(m, w, NW_EV_SPAWN_FAILED, NULL);
	is_str(state(w), "exited", "a spawn that cannot happen is an exit");
	ok(w->spawn_failed && !w->was_stopped, "a failure");
	nw_worker_event(m, w, NW_EV_EXITED, NULL);
	is_str(state(w), "exited", "no second exit");
	nw_worker_settle(m, w, -1);
	drop_master(m);
}

static void
probe_gate(void)
{
	struct nw_master *m = fresh_master();
	struct nw_worker *w;

	config.warmup_path = "/";
	w = nw_worker_new(m, m->current, NULL);
	nw_worker_event(m, w, NW_EV_SPAWNED, NULL);
	nw_worker_event(m, w, NW_EV_BOOTED, NULL);
	is_str(state(w), "probing", "warm-up gate: booted, then probing");
	ok(w->probe != NULL, "a probe is out");
	ok(!nw_worker_counts_as_capacity(w), "probing is no capacity");
	w->probe_last.status = 500;
	w->probe_last.at = 1;
	strcpy(w->probe_last.path, "/");
	strcpy(w->probe_last.body, "ImportError: no module named x");
	w->probe_failures = 5;
	nw_worker_event(m, w, NW_EV_PROBE_FAILED, NULL);
	is_str(state(w), "stopping", "probe failed: stopped");
	ok(w->probe == NULL, "the probe is gone");
	is_str(w->boot_failure, "failed the warm-up request: GET / answered "
	    "500: ImportError: no module named x",
	    "the answer is the reason");
	nw_worker_event(m, w, NW_EV_EXITED, NULL);
	nw_worker_settle(m, w, -1);

	w = nw_worker_new(m, m->current, NULL);
	nw_worker_event(m, w, NW_EV_SPAWNED, NULL);
	nw_worker_event(m, w, NW_EV_BOOTED, NULL);
	nw_worker_event(m, w, NW_EV_PROBE_OK, "a dependency is down");
	is_str(state(w), "live", "probe waived by the reconcile step: live");
	nw_worker_event(m, w, NW_EV_TIMER, NULL);
	is_str(state(w), "live", "a stray timer while live: ignored");
	nw_worker_event(m, w, NW_EV_HANG, NULL);
	is_str(state(w), "stopping", "hang: stopped");
	ok(w->hung && !w->was_stopped, "hung, a failure");
	nw_worker_event(m, w, NW_EV_EXITED, NULL);
	nw_worker_settle(m, w, -1);
	config.warmup_path = NULL;
	drop_master(m);
}

static void
backoff_schedule(void)
{
	static const double want[] = { 0, 1, 2, 4, 8, 16, 30, 30 };
	struct nw_master *m = fresh_master();
	struct nw_worker *w = nw_worker_new(m, m->current, NULL);

	for (int i = 0; i < 8; i++)
		is_double(nw_supervise_backoff(i + 1), want[i],
		    "death %d: respawn after %gs", i + 1, want[i]);

	/* Quick deaths climb the schedule; a long life starts it over. */
	w->spawned_at = ev_now(m->loop);
	for (int i = 0; i < 4; i++) {
		w->state = NW_EXITED;
		is_double(nw_supervise_exit_plan(m, w), want[i],
		    "quick death %d of a slot: %gs", i + 1, want[i]);
	}
	w->spawned_at = ev_now(m->loop) - 31;
	is_double(nw_supervise_exit_plan(m, w), 0,
	    "after 31 s up: the schedule starts over");
	w->was_stopped = 1;
	ok(nw_supervise_exit_plan(m, w) < 0, "a stopped worker is not respawned");
	w->was_stopped = 0;
	m->stopping = NW_STOP_GRACEFUL;
	ok(nw_supervise_exit_plan(m, w) < 0, "nor while the master stops");
	m->stopping = NW_RUNNING;
	drop_master(m);
}

int
main(void)
{
	nw_log_init(NW_LOG_CRITICAL);
	lifecycle_without_probe();
	exit_is_a_leaf_during_a_reload();
	boot_failures();
	probe_gate();
	backoff_schedule();
	return done_testing();
}
