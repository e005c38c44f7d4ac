/*
 * test_metrics.c: the master's side of the workers' counters, without
 * processes: the heartbeat parser, totals that survive a worker's exit, the
 * watch's verdict ("1% against 1%" never rolls back), the Prometheus text
 * (checked by promtool when it is installed) and gunicorn's statsd lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "master.h"
#include "tap.h"

static const char *const full_hb =
    "1234 inflight=2 bytes=99999 s1=0 s2=1200 s3=10 s4=4 s5=20 s500=15 "
    "s502=2 s503=1 s504=1 lat=100,200,300,400,200,30,4,0,0,0,0,0 "
    "latsum_us=3456789 ws=3";

static void
parses_the_documented_format(void)
{
	struct nw_counters c;
	unsigned inflight = 9, ws = 9;

	is_int(nw_metrics_parse_hb(full_hb, &c, &inflight, &ws), 1,
	    "a full heartbeat has counters");
	is_int((long long)c.requests, 1234, "requests: the classes' sum");
	is_int((long long)c.status[2], 1200, "s2");
	is_int((long long)c.status[5], 20, "s5");
	is_int((long long)c.s500, 15, "s500");
	is_int((long long)c.s504, 1, "s504");
	is_int((long long)c.lat[0], 100, "first latency bucket");
	is_int((long long)c.lat[6], 4, "seventh latency bucket");
	is_int((long long)c.latsum_us, 3456789, "latsum_us");
	is_int((long long)c.bytes, 99999, "bytes");
	is_int(inflight, 2, "inflight");
	is_int(ws, 3, "ws");
	is_int(nw_metrics_parse_hb("17", &c, &inflight, &ws), 0,
	    "`hb N` alone: no counters");
	is_int((long long)c.requests, 17, "...but the count");
	is_int(nw_metrics_parse_hb("5 zz=abc s2=5 future=1,2", &c, &inflight,
	    &ws), 1, "unknown keys are ignored, whatever they hold");
	is_int((long long)c.status[2], 5, "...and known ones still read");
	is_int(nw_metrics_parse_hb("5 s2=5 s5=1 s2=6", &c, &inflight, &ws), 1,
	    "any order; a repeated key: the last wins");
	is_int((long long)c.status[2], 6, "...s2 is 6");
	is_int(nw_metrics_parse_hb("x1", &c, &inflight, &ws), -1,
	    "a bad count is malformed");
	is_int(nw_metrics_parse_hb("1 s2", &c, &inflight, &ws), -1,
	    "a token without = is malformed");
	is_int(nw_metrics_parse_hb("1 lat=1,x", &c, &inflight, &ws), -1,
	    "a bad latency list is malformed");
	is_int(nw_metrics_parse_hb("1 lat=1,2,3,4,5,6,7,8,9,10,11,12,13", &c,
	    &inflight, &ws), 1, "extra latency buckets are ignored");
	is_int((long long)c.lat[11], 12, "...the twelfth is kept");
}

/* A master with one generation and two workers, no loop, no processes. */
struct fixture {
	struct nw_master m;
	struct nw_config config;
	struct nw_generation gen1, gen2;
	struct nw_worker w1, w2, w3;
};

static void
fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof *f);
	TAILQ_INIT(&f->m.workers);
	TAILQ_INIT(&f->m.generations);
	TAILQ_INIT(&f->m.prom.clients);
	f->m.prom.fd = f->m.statsd.fd = -1;
	f->config.watch = 1;
	f->config.watch_min_requests = 50;
	f->config.watch_error_margin = 0.02;
	f->m.config = &f->config;
	f->gen1 = (struct nw_generation){ .id = 1, .config = &f->config,
		.tree = "/srv/app/releases/v1" };
	f->gen2 = (struct nw_generation){ .id = 2, .config = &f->config,
		.tree = "/srv/app/releases/\"v2\"\\x" };
	TAILQ_INSERT_TAIL(&f->m.generations, &f->gen1, entry);
	TAILQ_INSERT_TAIL(&f->m.generations, &f->gen2, entry);
	f->m.current = &f->gen1;
	f->m.target = 2;
	f->w1 = (struct nw_worker){ .id = 1, .pid = 101, .state = NW_LIVE,
		.gen = &f->gen1, .slot = 0, .control_fd = -1, .live_at = 1 };
	f->w2 = (struct nw_worker){ .id = 2, .pid = 102, .state = NW_LIVE,
		.gen = &f->gen1, .slot = 1, .control_fd = -1, .live_at = 1 };
	f->w3 = (struct nw_worker){ .id = 3, .pid = 103, .state = NW_LIVE,
		.gen = &f->gen2, .slot = 0, .control_fd = -1, .live_at = 1 };
	TAILQ_INSERT_TAIL(&f->m.workers, &f->w1, entry);
	TAILQ_INSERT_TAIL(&f->m.workers, &f->w2, entry);
	TAILQ_INSERT_TAIL(&f->m.workers, &f->w3, entry);
}

static void
totals_survive_an_exit(void)
{
	struct fixture f;
	struct nw_counters all, g1;

	fixture_init(&f);
	nw_metrics_heartbeat(&f.m, &f.w1, "100 s2=90 s5=10 s500=10");
	nw_metrics_heartbeat(&f.m, &f.w2, "53 s2=50");
	is_int((long long)f.w2.requests, 53,
	    "served (health checks included) for status");
	is_int((long long)f.w2.counted.requests, 50,
	    "requests: the public answers, by class");
	nw_metrics_heartbeat(&f.m, &f.w3, "7 s2=7");
	nw_metrics_sum(&f.m, NULL, &all);
	is_int((long long)all.requests, 157, "all workers: 157 answers");
	/* w1 recycled: it said retire, was stopped, and exited. */
	f.w1.retire_cause = NW_RESTART_RECYCLED;
	f.w1.was_stopped = 1;
	nw_metrics_heartbeat(&f.m, &f.w1, "120 s2=110 s5=10 s500=10");
	nw_metrics_worker_exited(&f.m, &f.w1);
	TAILQ_REMOVE(&f.m.workers, &f.w1, entry);
	nw_metrics_sum(&f.m, NULL, &all);
	nw_metrics_sum(&f.m, &f.gen1, &g1);
	is_int((long long)all.requests, 177,
	    "after the exit the total keeps its 120 answers");
	is_int((long long)g1.requests, 170, "generation 1: 120 + 50");
	is_int((long long)g1.status[5], 10, "generation 1: ten 5xx");
	is_int((long long)f.m.metrics.restarts[NW_RESTART_RECYCLED], 1,
	    "one restart, recycled");
	/* w2 crashes after going live. */
	nw_metrics_worker_exited(&f.m, &f.w2);
	is_int((long long)f.m.metrics.restarts[NW_RESTART_CRASHED], 1,
	    "one restart, crashed");
	f.w2.hung = 1;
	nw_metrics_worker_exited(&f.m, &f.w2);
	is_int((long long)f.m.metrics.restarts[NW_RESTART_TIMED_OUT], 1,
	    "one restart, timed out");
	nw_metrics_sum(&f.m, &f.gen1, &g1);
	is_int((long long)g1.requests, 170,
	    "folding the same worker twice adds nothing");
	is_int((long long)nw_metrics_slot(&f.m, &f.gen1, NULL), 0,
	    "slot 0 of generation 1 is free again");
	is_int((long long)nw_metrics_slot(&f.m, &f.gen1, &f.w2), 1,
	    "a replacement takes its predecessor's slot");
}

static int
verdict(unsigned long long old_n, unsigned long long old_e,
    unsigned long long new_n, unsigned long long new_e)
{
	struct nw_counters o = { .requests = old_n }, n = { .requests = new_n };
	char why[256];

	o.status[5] = old_e;
	n.status[5] = new_e;
	return nw_canary_verdict(&o, &n, 50, 0.02, why, sizeof why);
}

static void
watch_verdicts(void)
{
	is_int(verdict(10000, 0, 49, 49), -1,
	    "49 answers, all 5xx: too few to judge (min 50)");
	is_int(verdict(10000, 0, 50, 50), 1, "50 of 50 5xx against 0: worse");
	is_int(verdict(10000, 100, 1000, 10), 0, "1% against 1%: fine");
	is_int(verdict(10000, 100, 100, 3), 0,
	    "3% on 100 answers against 1%: noise, fine");
	is_int(verdict(100000, 1000, 50000, 500), 0,
	    "1% against 1% on much traffic: fine");
	is_int(verdict(10000, 100, 2000, 100), 1,
	    "5% on 2000 answers against 1%: worse");
	is_int(verdict(10000, 100, 2000, 50), 0,
	    "2.5% against 1%: under the 2-point margin, fine");
	is_int(verdict(0, 0, 60, 60), 1,
	    "no baseline, 60 of 60 5xx: worse");
	is_int(verdict(0, 0, 100, 1), 0, "no baseline, 1%: fine");
	is_int(verdict(10000, 5000, 200, 110), 0,
	    "55% against 50%: not 3 standard errors, fine");
}

static void
prometheus_text(void)
{
	struct fixture f;
	char path[] = "/tmp/nw-metrics-XXXXXX", cmd[128];
	size_t len;
	char *text;
	FILE *out;
	int fd, rc;

	fixture_init(&f);
	nw_metrics_heartbeat(&f.m, &f.w1, full_hb);
	nw_metrics_heartbeat(&f.m, &f.w2, full_hb);
	nw_metrics_heartbeat(&f.m, &f.w3, "5 inflight=1 s2=3 lat=3");
	f.m.reload.gen = &f.gen2;
	text = nw_prometheus_render(&f.m, &len);
	ok(text != NULL && len > 0, "rendered %zu bytes", len);
	ok(strstr(text, "narwhal_requests_total 2471\n") != NULL,
	    "narwhal_requests_total 2471");
	ok(strstr(text, "narwhal_responses_5xx_total{code=\"500\"} 30\n") !=
	    NULL, "500s by code");
	ok(strstr(text, "narwhal_request_duration_seconds_bucket{le=\"+Inf\"} "
	    "2471\n") != NULL, "the +Inf bucket counts every answer");
	ok(strstr(text, "narwhal_worker_requests_in_flight{generation=\"2\","
	    "slot=\"0\"} 1\n") != NULL, "in flight per generation and slot");
	ok(strstr(text, "tree=\"/srv/app/releases/\\\"v2\\\"\\\\x\"") != NULL,
	    "label values are escaped");
	ok(strstr(text, "narwhal_workers_busy 3\n") != NULL,
	    "three busy workers");
	fd = mkstemp(path);
	out = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (out != NULL) {
		fwrite(text, 1, len, out);
		fclose(out);
	}
	if (system("command -v promtool >/dev/null 2>&1") != 0) {
		ok(1, "# SKIP promtool not installed");
	} else {
		snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
		rc = system(cmd);
		is_int(rc, 0, "promtool check metrics passes");
	}
	unlink(path);
	free(text);
}

static void
statsd_lines(void)
{
	struct fixture f;
	char buf[2048];
	int sv[2];
	ssize_t n;

	fixture_init(&f);
	f.config.dogstatsd_tags = "env:test,app:x";
	snprintf(f.m.statsd.prefix, sizeof f.m.statsd.prefix, "svc.");
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) {
		ok(0, "socketpair");
		return;
	}
	f.m.statsd.fd = sv[0];
	nw_metrics_heartbeat(&f.m, &f.w1, "10 s2=9 s5=1 s500=1 lat=10 "
	    "latsum_us=20000");
	nw_metrics_heartbeat(&f.m, &f.w1, "15 s2=14 s5=1 s500=1 lat=15 "
	    "latsum_us=30000");
	nw_statsd_flush(&f.m);
	n = recv(sv[1], buf, sizeof buf - 1, MSG_DONTWAIT);
	buf[n > 0 ? n : 0] = '\0';
	ok(strstr(buf, "svc.gunicorn.requests:15|c|@1.0|#env:test,app:x\n") !=
	    NULL, "gunicorn.requests counts the deltas: 15");
	ok(strstr(buf, "svc.gunicorn.request.status.500:1|c|@1.0|#env:test,"
	    "app:x\n") != NULL, "gunicorn.request.status.500");
	ok(strstr(buf, "svc.gunicorn.request.status.2xx:14|c") != NULL,
	    "other classes as status.2xx");
	ok(strstr(buf, "svc.gunicorn.request.duration:2.000|ms|@0.0666667") !=
	    NULL, "one bucket: its mean, 15 samples");
	ok(strstr(buf, "svc.gunicorn.workers:3|g") != NULL,
	    "gunicorn.workers gauge");
	close(sv[0]);
	close(sv[1]);
}

static struct nw_config *
flags(const char *key, const char *value, char *err, size_t errlen)
{
	char *argv[] = { "narwhal", "--chdir", "/tmp", "app:application",
		(char *)key, (char *)value, NULL };

	return nw_config_load(key ? 6 : 4, argv, err, errlen);
}

static void
config_keys(void)
{
	struct nw_config *c;
	char err[1024];

	c = flags(NULL, NULL, err, sizeof err);
	if (ok(c != NULL, "defaults load: %s", err)) {
		is_int(c->watch, 1, "the watch is on by default");
		ok(c->watch_window == 30, "watch_window 30");
		is_int(c->watch_min_requests, 50, "watch_min_requests 50");
		ok(c->watch_error_margin == 0.02, "watch_error_margin 0.02");
		ok(c->metrics_bind == NULL && c->statsd_host == NULL,
		    "metrics_bind and statsd_host off");
		ok(c->metrics_interval == 1, "metrics_interval 1");
	}
	nw_config_free(c);
	c = flags("--watch", "off", err, sizeof err);
	ok(c != NULL && c->watch == 0, "--watch off");
	nw_config_free(c);
	c = flags("--watch", "maybe", err, sizeof err);
	ok(c == NULL && strstr(err, "'maybe' is not one of true, false") !=
	    NULL, "--watch maybe: %s", err);
	c = flags("--watch-error-margin", "1.5", err, sizeof err);
	ok(c == NULL && strstr(err, "'1.5' is not a number from 0 to 1"),
	    "--watch-error-margin 1.5: %s", err);
	c = flags("--metrics-bind", "fd://x", err, sizeof err);
	ok(c == NULL && strstr(err, "is not HOST:PORT or unix:PATH"),
	    "--metrics-bind fd://x: %s", err);
	c = flags("--metrics-bind", "127.0.0.1:9108", err, sizeof err);
	ok(c != NULL && strcmp(c->metrics_bind, "127.0.0.1:9108") == 0,
	    "--metrics-bind 127.0.0.1:9108");
	nw_config_free(c);
	c = flags("--statsd-host", "localhost:8125", err, sizeof err);
	ok(c != NULL && strcmp(c->statsd_host, "localhost:8125") == 0,
	    "--statsd-host localhost:8125");
	nw_config_free(c);
	c = flags("--metrics-interval", "0", err, sizeof err);
	ok(c == NULL, "--metrics-interval 0 is refused: %s", err);
}

int
main(void)
{
	config_keys();
	parses_the_documented_format();
	totals_survive_an_exit();
	watch_verdicts();
	prometheus_text();
	statsd_lines();
	return done_testing();
}
