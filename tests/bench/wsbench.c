/*
 * wsbench.c: a WebSocket echo load generator, for tests/bench/bench.py.
 *
 * wrk cannot speak WebSocket and a Python client is slower than the servers
 * it would measure, so this is one thread of C with epoll: it opens -c
 * connections, upgrades each (no extensions offered, so every server sends
 * plain frames), then each connection sends a -s byte text message, waits
 * for its echo and sends the next (-p messages in flight), for -d seconds
 * after a -w second warm-up. It prints one line of key=value pairs:
 * messages, rate (messages/s), p50_us, p99_us, max_us, errors, cpu_s (its
 * own CPU time, to show that the client is not the bottleneck).
 *
 *   wsbench [-c 64] [-d 10] [-w 1] [-s 32] [-p 1] HOST PORT [PATH]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ws.h"

#define HIST_US 1000000 /* 1 us buckets up to 1 s, then one overflow */
#define INBUF (256 * 1024)

struct client {
	int fd;
	bool upgraded;
	unsigned char in[INBUF];
	size_t inlen;
	int64_t sent_at[64]; /* send times of the messages in flight (ring) */
	unsigned head, tail;
};

static uint32_t hist[HIST_US + 1];
static uint64_t nmessages, nerrors;
static bool measuring;
static unsigned char *frame;
static size_t frame_len, msg_size;

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

static void
send_message(struct client *c)
{
	ssize_t n = write(c->fd, frame, frame_len);

	if (n != (ssize_t)frame_len) {
		/* a small frame on a fresh socket: a short write is an error */
		nerrors++;
		return;
	}
	c->sent_at[c->head++ & 63] = now_us();
}

static void
got_message(struct client *c)
{
	int64_t lat = now_us() - c->sent_at[c->tail++ & 63];

	if (measuring) {
		hist[lat < HIST_US ? lat : HIST_US]++;
		nmessages++;
	}
	send_message(c);
}

/* Parses server frames from c->in; returns -1 on a broken stream. */
static int
parse(struct client *c)
{
	size_t off = 0;

	while (c->inlen - off >= 2) {
		unsigned char *h = c->in + off;
		uint64_t len = h[1] & 0x7f;
		size_t hl = 2;

		if (len == 126) {
			if (c->inlen - off < 4)
				break;
			len = (uint64_t)h[2] << 8 | h[3];
			hl = 4;
		} else if (len == 127) {
			if (c->inlen - off < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | h[2 + i];
			hl = 10;
		}
		if (len > INBUF - 16)
			return -1;
		if (c->inlen - off < hl + len)
			break;
		switch (h[0] & 0x0f) {
		case NW_WS_OP_TEXT:
		case NW_WS_OP_BINARY:
			if (len != msg_size || !(h[0] & 0x80))
				nerrors++;
			got_message(c);
			break;
		case NW_WS_OP_PING: {
			unsigned char pong[NW_WS_HEADER_MAX + 125];
			static const uint8_t key[4] = {1, 2, 3, 4};
			size_t n = nw_ws_header(
			    pong, NW_WS_OP_PONG, true, false, len, key);

			memcpy(pong + n, h + hl, len);
			nw_ws_mask(pong + n, len, key, 0);
			if (write(c->fd, pong, n + len) < 0)
				nerrors++;
			break;
		}
		case NW_WS_OP_CLOSE:
			return -1;
		default:
			break;
		}
		off += hl + len;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	return 0;
}

static int
readable(struct client *c, unsigned depth)
{
	for (;;) {
		ssize_t n = read(c->fd, c->in + c->inlen, INBUF - c->inlen);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0)
			return -1;
		c->inlen += (size_t)n;
		if (!c->upgraded) {
			unsigned char *end =
			    memmem(c->in, c->inlen, "\r\n\r\n", 4);
			size_t hl;

			if (end == NULL)
				continue;
			if (c->inlen < 12 || memcmp(c->in + 9, "101", 3) != 0) {
				fprintf(stderr,
				    "wsbench: upgrade refused: %.*s\n",
				    (int)(c->inlen > 80 ? 80 : c->inlen),
				    (char *)c->in);
				exit(1);
			}
			hl = (size_t)(end - c->in) + 4;
			memmove(c->in, c->in + hl, c->inlen - hl);
			c->inlen -= hl;
			c->upgraded = true;
			for (unsigned i = 0; i < depth; i++)
				send_message(c);
		}
		if (parse(c) < 0)
			return -1;
		if ((size_t)n < INBUF / 2)
			return 0; /* drained, most likely: back to epoll */
	}
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static uint64_t
percentile(double q)
{
	uint64_t want = (uint64_t)(q * (double)nmessages), seen = 0;

	for (size_t i = 0; i <= HIST_US; i++) {
		seen += hist[i];
		if (seen > want)
			return i;
	}
	return HIST_US;
}

int
main(int argc, char **argv)
{
	unsigned conns = 64, depth = 1;
	double duration = 10, warmup = 1;
	const char *host, *port, *path = "/";
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	struct client *clients;
	char req[512];
	int opt, ep, reqlen;
	int64_t start, warm_end, end;
	double cpu0;
	uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};

	msg_size = 32;
	while ((opt = getopt(argc, argv, "c:d:w:s:p:")) != -1) {
		switch (opt) {
		case 'c':
			conns = (unsigned)atoi(optarg);
			break;
		case 'd':
			duration = atof(optarg);
			break;
		case 'w':
			warmup = atof(optarg);
			break;
		case 's':
			msg_size = (size_t)atol(optarg);
			break;
		case 'p':
			depth = (unsigned)atoi(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind < 2 || depth < 1 || depth > 32 || conns < 1 ||
	    msg_size > INBUF / 2) {
	usage:
		fprintf(stderr,
		    "usage: wsbench [-c conns] [-d seconds] "
		    "[-w warmup] [-s size] [-p depth] HOST PORT "
		    "[PATH]\n");
		return 2;
	}
	host = argv[optind];
	port = argv[optind + 1];
	if (argc - optind > 2)
		path = argv[optind + 2];
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		die("getaddrinfo");

	/* every message is the same bytes: mask once */
	frame = malloc(msg_size + NW_WS_HEADER_MAX);
	frame_len =
	    nw_ws_header(frame, NW_WS_OP_TEXT, true, false, msg_size, key);
	memset(frame + frame_len, 'x', msg_size);
	nw_ws_mask(frame + frame_len, msg_size, key, 0);
	frame_len += msg_size;

	reqlen = snprintf(req, sizeof(req),
	    "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n",
	    path, host, port);
	ep = epoll_create1(0);
	clients = calloc(conns, sizeof(*clients));
	if (ep < 0 || clients == NULL)
		die("setup");
	for (unsigned i = 0; i < conns; i++) {
		struct client *c = &clients[i];
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		int one = 1;

		c->fd = socket(ai->ai_family, SOCK_STREAM, 0);
		if (c->fd < 0 ||
		    connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0)
			die("connect");
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (write(c->fd, req, (size_t)reqlen) != reqlen)
			die("write");
		fcntl(c->fd, F_SETFL, O_NONBLOCK);
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			die("epoll_ctl");
	}
	start = now_us();
	warm_end = start + (int64_t)(warmup * 1e6);
	end = warm_end + (int64_t)(duration * 1e6);
	cpu0 = cpu_seconds();
	for (;;) {
		struct epoll_event evs[256];
		int64_t t = now_us();
		int n;

		if (!measuring && t >= warm_end) {
			measuring = true;
			cpu0 = cpu_seconds();
		}
		if (t >= end)
			break;
		n = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			struct client *c = evs[i].data.ptr;

			if (readable(c, depth) < 0) {
				nerrors++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				c->fd = -1;
			}
		}
	}
	printf("messages=%llu rate=%.1f p50_us=%llu p99_us=%llu max_us=%llu "
	       "errors=%llu cpu_s=%.3f seconds=%.3f connections=%u\n",
	    (unsigned long long)nmessages, nmessages / duration,
	    (unsigned long long)percentile(0.50),
	    (unsigned long long)percentile(0.99),
	    (unsigned long long)percentile(0.999999),
	    (unsigned long long)nerrors, cpu_seconds() - cpu0, duration, conns);
	return 0;
}
