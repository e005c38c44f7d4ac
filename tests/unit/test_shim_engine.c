/*
 * test_shim_engine.c: the connection engine under a toy driver, without
 * Python: a request answered in place, a request parked and answered later
 * (with a pipelined one waiting behind it), a streamed body, an upgrade
 * whose bytes then belong to the driver, and what the engine answers by
 * itself (400, 413) without the driver ever seeing the request. It drives
 * the engine as a driver does: epoll_wait on its fd, then dispatch and tick.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/engine.h"
#include "tap.h"

static struct nw_engine eng;
static struct nw_conn *parked;
static int requests, closes;
static char last_path[64];
static char body[256];
static size_t body_len;
static bool body_done;

static int
reply(struct nw_conn *c, const char *text, bool close)
{
	char out[256];
	struct iovec iov;
	int n = snprintf(out, sizeof out,
	    "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(text),
	    text);

	iov.iov_base = out;
	iov.iov_len = (size_t)n;
	if (nw_conn_write(c, &iov, 1) < 0)
		return -1;
	nw_conn_log(c, 200, strlen(text));
	nw_conn_response_done(c, close);
	return 0;
}

static int
toy_request(struct nw_conn *c)
{
	const char *buf = c->in.data + c->rpos;

	requests++;
	snprintf(last_path, sizeof last_path, "%.*s", (int)c->req.path.len,
	    buf + c->req.path.off);
	if (strcmp(last_path, "/park") == 0) {
		parked = c; /* a pool thread would run it now */
		return 0;
	}
	if (strcmp(last_path, "/upgrade") == 0) {
		static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\n"
		                         "Upgrade: echo\r\nConnection: "
		                         "Upgrade\r\n\r\n";
		struct iovec iov = {(void *)sw, sizeof sw - 1};

		nw_conn_write(c, &iov, 1);
		nw_conn_upgrade(c);
		return 0;
	}
	if (strcmp(last_path, "/body") == 0 && !c->body_done)
		return 0; /* answered once the body is complete */
	return reply(c, last_path, false);
}

static int
toy_body(struct nw_conn *c, const char *p, size_t n, bool done)
{
	memcpy(body + body_len, p, n);
	body_len += n;
	body_done = done;
	if (done)
		return reply(c, "body", false) < 0 ? 500 : 0;
	return 0;
}

/* The bytes after an upgrade: echoed. */
static void
toy_upgraded(struct nw_conn *c, bool eof)
{
	struct iovec iov;

	if (eof) {
		nw_conn_close(c);
		return;
	}
	iov.iov_base = c->in.data + c->rpos;
	iov.iov_len = c->in.len - c->rpos;
	nw_conn_write(c, &iov, 1);
	c->in.len = c->rpos;
}

static void
toy_closed(struct nw_conn *c)
{
	closes++;
	if (c == parked)
		parked = NULL;
}

static const struct nw_driver toy = {
    .conn_size = sizeof(struct nw_conn),
    .whole_body = false,
    .request = toy_request,
    .body = toy_body,
    .upgraded = toy_upgraded,
    .closed = toy_closed,
};

/* One turn of the driver's loop. */
static void
pump(int timeout_ms)
{
	struct epoll_event ev[64];
	int n = epoll_wait(eng.epfd, ev, 64, timeout_ms);

	nw_clock_update(&eng.clock);
	if (n > 0)
		nw_engine_dispatch(&eng, ev, n);
	nw_engine_tick(&eng);
}

static int
client(const struct sockaddr_un *sun, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (connect(fd, (const struct sockaddr *)sun, len) < 0)
		return -1;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/*
 * Sends data (if any), then runs the engine and reads until want appears
 * (or the peer closes, or a second passes). Returns what was read.
 */
static char got[4096];
static bool eof;

static const char *
exchange(int fd, const char *data, const char *want)
{
	size_t len = 0;
	int i;

	eof = false;
	if (data && write(fd, data, strlen(data)) < 0)
		return "";
	for (i = 0; i < 100; i++) {
		ssize_t n;

		pump(10);
		while ((n = read(fd, got + len, sizeof got - 1 - len)) > 0)
			len += (size_t)n;
		got[len] = '\0';
		if (n == 0)
			eof = true;
		if (eof || (want && strstr(got, want)))
			break;
	}
	return got;
}

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay++;
	}
	return n;
}

int
main(void)
{
	struct sockaddr_un sun;
	socklen_t len;
	int lfd, fd;
	const char *r;
	char hb[512];

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1, "nw-test-engine-%d",
	    (int)getpid());
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	    strlen(sun.sun_path + 1));
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (bind(lfd, (struct sockaddr *)&sun, len) < 0 ||
	    listen(lfd, 16) < 0) {
		perror("listen");
		return 1;
	}
	nw_engine_init(&eng, &toy);
	eng.limits.body = 100;
	eng.listeners = calloc(1, sizeof *eng.listeners);
	/* a public listener: the private one's answers are not counted */
	if (nw_listener_init(&eng.listeners[0], lfd, true) < 0)
		return 1;
	eng.nlisteners = 1;
	eng.live = true;
	ok(nw_engine_start(&eng) == 0, "the engine starts");

	fd = client(&sun, len);
	r = exchange(
	    fd, "GET /now HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n\r\n/now");
	ok(strstr(r, "HTTP/1.1 200 OK") != NULL, "answered in place");
	is_int(requests, 1, "the driver saw one request");
	r = exchange(fd,
	    "POST /now HTTP/1.1\r\nHost: h\r\nContent-Length: 5"
	    "\r\n\r\nhelloGET /now2 HTTP/1.1\r\nHost: h\r\n\r\n",
	    "\r\n\r\n/now2");
	ok(count(r, "HTTP/1.1 200 OK") == 2 && strstr(r, "/now2") != NULL,
	    "answered before its body was taken: the body is not a request");
	requests = 1;

	/* parked, with a pipelined request behind it */
	r = exchange(fd,
	    "GET /park HTTP/1.1\r\nHost: h\r\n\r\n"
	    "GET /after HTTP/1.1\r\nHost: h\r\n\r\n",
	    NULL);
	ok(parked != NULL && strcmp(last_path, "/park") == 0,
	    "a request is parked");
	is_int(requests, 2, "the pipelined one waits behind it");
	is_str(r, "", "nothing answered yet");
	is_int(nw_engine_inflight(&eng), 1, "in flight: 1");
	reply(parked, "parked", false);
	r = exchange(fd, NULL, "/after");
	ok(strstr(r, "\r\n\r\nparked") != NULL &&
	        strstr(r, "\r\n\r\nparked") < strstr(r, "\r\n\r\n/after"),
	    "resumed: its answer, then the pipelined one's");
	is_int(requests, 3, "the pipelined one ran after the resume");

	/* a streamed body */
	r = exchange(fd,
	    "POST /body HTTP/1.1\r\nHost: h\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
	    NULL);
	ok(body_len == 5 && !body_done, "the body's first chunk, as it came");
	r = exchange(fd, "6\r\n world\r\n0\r\n\r\n", "\r\n\r\nbody");
	ok(body_len == 11 && body_done && memcmp(body, "hello world", 11) == 0,
	    "...then the rest, done");
	ok(strstr(r, "\r\n\r\nbody") != NULL, "answered once it was whole");
	close(fd);
	pump(10);

	/* what the engine answers alone */
	fd = client(&sun, len);
	requests = 0;
	r = exchange(fd, "GET foo/bar HTTP/1.1\r\nHost: h\r\n\r\n", NULL);
	ok(strncmp(r, "HTTP/1.1 400 ", 13) == 0 && eof,
	    "a bad target: 400, then the close");
	is_int(requests, 0, "the driver never saw it");
	close(fd);
	fd = client(&sun, len);
	r = exchange(fd,
	    "POST /body HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 1000\r\n\r\n",
	    NULL);
	ok(strncmp(r, "HTTP/1.1 413 ", 13) == 0 && eof,
	    "a body over the limit: 413");
	close(fd);
	fd = client(&sun, len);
	body_len = 0;
	r = exchange(fd,
	    "POST /body HTTP/1.1\r\nHost: h\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n",
	    NULL);
	ok(strncmp(r, "HTTP/1.1 400 ", 13) == 0 && requests == 0 &&
	        body_len == 0,
	    "a broken chunk with the head: 400 before the driver saw it");
	close(fd);

	/* an upgrade: the bytes are the driver's */
	fd = client(&sun, len);
	r = exchange(
	    fd, "GET /upgrade HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n\r\n");
	ok(strncmp(r, "HTTP/1.1 101 ", 13) == 0, "101");
	r = exchange(fd, "not HTTP at all\r\n\r\n", "all");
	is_str(r, "not HTTP at all\r\n\r\n", "raw bytes, echoed by the driver");
	close(fd);
	exchange(-1, NULL, NULL);

	nw_engine_heartbeat_format(hb, sizeof hb, &eng.counters,
	    nw_engine_inflight(&eng), 0);
	ok(strncmp(hb, "hb 7 inflight=0 ", 16) == 0,
	    "served 7 (the upgrade counts toward max_requests): %s", hb);
	ok(strstr(hb, " s2=6 ") != NULL && strstr(hb, " s4=3 ") != NULL,
	    "six 2xx, three 4xx of the engine's");
	is_int(count(hb, ","), 11, "twelve latency buckets");

	nw_engine_stop(&eng, 0);
	exchange(-1, NULL, NULL);
	ok(eng.stopping, "stopping");
	nw_engine_free(&eng);
	is_int(closes, 5, "every connection closed");
	free(eng.listeners);
	close(lfd);
	return done_testing();
}
