/*
 * net.c: socket plumbing for the engine.
 *
 * Accepting and configuring one connection from a listener, describing a
 * listening socket's own address, and telling a client on this host. It
 * keeps no state; listen.c decides what to do with the answers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"

/*
 * Accepts one connection, non-blocking and close-on-exec, with TCP_NODELAY
 * on a TCP listener. Returns the fd, or NW_ACCEPT_STOP (nothing more now, or
 * an error, logged), NW_ACCEPT_RETRY (a transient failure: go on) or
 * NW_ACCEPT_BUSY (out of fds or memory, logged: the caller pauses 100ms).
 */
int
nw_accept(int lfd, bool tcp, struct sockaddr_storage *peer, socklen_t *plen)
{
	int fd, one = 1;

	*plen = sizeof *peer;
	fd = accept4(
	    lfd, (struct sockaddr *)peer, plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		switch (errno) {
		case EAGAIN:
			return NW_ACCEPT_STOP;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			return NW_ACCEPT_RETRY;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			/* level-triggered: back off instead of spinning */
			nw_log("accept: %s; pausing 100ms", strerror(errno));
			return NW_ACCEPT_BUSY;
		default:
			nw_log("accept: %s", strerror(errno));
			return NW_ACCEPT_STOP;
		}
	}
	if (tcp)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/*
 * A listening socket's own address: for AF_INET and AF_INET6 the address
 * and port, for AF_UNIX the path ('@' first if abstract) and port 0, for
 * anything else "" and 0. Returns the family, or -1 with errno set if
 * getsockname fails.
 */
int
nw_sock_name(int fd, char host[NW_HOST_MAX], int *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	memset(&ss, 0, sizeof ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	host[0] = '\0';
	*port = 0;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, NW_HOST_MAX);
		*port = ntohs(sin->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, NW_HOST_MAX);
		*port = ntohs(sin6->sin6_port);
	} else if (ss.ss_family == AF_UNIX) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
		size_t n = len > offsetof(struct sockaddr_un, sun_path)
		    ? len - offsetof(struct sockaddr_un, sun_path)
		    : 0;

		if (n > 0 && sun->sun_path[0] == '\0') {
			host[0] = '@'; /* abstract */
			memcpy(host + 1, sun->sun_path + 1, n - 1);
			host[n] = '\0';
		} else {
			memcpy(host, sun->sun_path, n);
			host[n] = '\0';
		}
	}
	return ss.ss_family;
}

/*
 * A Unix socket, a loopback address, or this host's own address: a client
 * that shares our CPUs (a proxy, a load generator). The engine yields the
 * CPU after answering one (see nw_engine_yield).
 */
bool
nw_peer_is_local(int fd, const struct sockaddr_storage *peer)
{
	struct sockaddr_storage self;
	socklen_t len = sizeof self;

	if (peer->ss_family == AF_INET) {
		const struct sockaddr_in *p = (const void *)peer;

		if ((ntohl(p->sin_addr.s_addr) >> 24) == 127)
			return true;
	} else if (peer->ss_family == AF_INET6) {
		const struct sockaddr_in6 *p = (const void *)peer;

		if (IN6_IS_ADDR_LOOPBACK(&p->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&p->sin6_addr) &&
		        p->sin6_addr.s6_addr[12] == 127))
			return true;
	} else {
		return true;
	}
	if (getsockname(fd, (struct sockaddr *)&self, &len) < 0 ||
	    self.ss_family != peer->ss_family)
		return false;
	if (peer->ss_family == AF_INET)
		return ((struct sockaddr_in *)&self)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)peer)->sin_addr.s_addr;
	return memcmp(&((struct sockaddr_in6 *)&self)->sin6_addr,
	           &((const struct sockaddr_in6 *)peer)->sin6_addr,
	           sizeof(struct in6_addr)) == 0;
}
