/*
 * test_shim_heartbeat.c: the worker's counters and its heartbeat datagram
 * (engine/master.c): status classes, the 5xx the master watches, bytes, the
 * latency buckets and their sum, and the exact wire format the master
 * parses ("hb <served> key=value ...").
 */
#include <string.h>

#include "engine/engine.h"
#include "tap.h"

/* A start that many milliseconds ago. */
static int64_t
ago_ms(int ms)
{
	return nw_engine_now_ns() - (int64_t)ms * 1000000;
}

int
main(void)
{
	struct nw_engine e;
	char msg[512];
	size_t n;

	memset(&e, 0, sizeof e);
	n = nw_engine_heartbeat_format(msg, sizeof msg, &e.counters, 0, 0);
	is_str(msg,
	    "hb 0 inflight=0 bytes=0 s1=0 s2=0 s3=0 s4=0 s5=0 s500=0 s502=0 "
	    "s503=0 s504=0 lat=0,0,0,0,0,0,0,0,0,0,0,0 latsum_us=0 ws=0",
	    "a fresh worker's heartbeat");
	is_int(n, strlen(msg), "its length");

	e.counters.served = 7;
	nw_engine_count(&e, 200, 100, ago_ms(1)); /* <= 5 ms */
	nw_engine_count(&e, 201, 20, ago_ms(35)); /* 25..50 ms */
	nw_engine_count(&e, 304, 0, ago_ms(120)); /* 100..250 ms */
	nw_engine_count(&e, 404, 9, 0);           /* no start: no time */
	nw_engine_count(&e, 500, 30, ago_ms(12)); /* 10..25 ms */
	nw_engine_count(&e, 502, 0, 0);
	nw_engine_count(&e, 503, 0, 0);
	nw_engine_count(&e, 504, 0, 0);
	nw_engine_count(&e, 101, 0, 0);
	nw_engine_count(&e, 999, 0, 0); /* no class: bytes only */
	is_int(e.counters.status[2], 2, "2xx");
	is_int(e.counters.status[5], 4, "5xx, each of 500..504 in it");
	is_int(e.counters.bytes, 159, "body bytes");
	ok(e.counters.latsum_us >= 168000 && e.counters.latsum_us < 400000,
	    "the durations' sum in microseconds");
	e.counters.latsum_us = 168000; /* for an exact line */
	n = nw_engine_heartbeat_format(msg, sizeof msg, &e.counters, 3, 2);
	is_str(msg,
	    "hb 7 inflight=3 bytes=159 s1=1 s2=2 s3=1 s4=1 s5=4 s500=1 s502=1 "
	    "s503=1 s504=1 lat=1,0,1,1,0,1,0,0,0,0,0,0 latsum_us=168000 ws=2",
	    "counts, gauges and buckets in the wire format");
	ok(strncmp(msg, "hb 7 ", 5) == 0,
	    "<served> stays the first token (the master's strtoul)");

	memset(&e.counters, 0, sizeof e.counters);
	nw_engine_count(&e, 200, 0, ago_ms(20000));
	n = nw_engine_heartbeat_format(msg, sizeof msg, &e.counters, 0, 0);
	ok(strstr(msg, "lat=0,0,0,0,0,0,0,0,0,0,0,1 ") != NULL,
	    "over 10 s: the +Inf bucket");
	is_int(nw_engine_heartbeat_format(msg, 40, &e.counters, 0, 0), 0,
	    "no room: nothing, not half a message");
	return done_testing();
}
