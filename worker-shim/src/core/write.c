/*
 * write.c: blocking writers over non-blocking sockets.
 *
 * writev, send and sendfile until everything went, the peer is gone, or the
 * caller's wait hook gives up (it sleeps until writable, and may drop a lock
 * while it does). For drivers that answer a request in place; the engine's
 * own output never blocks (engine/output.c).
 */
#include <errno.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "core/http.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

static int
wait_writable(const struct nw_writer *w, int fd)
{
	return w->wait(w->arg, fd, w->timeout_ms);
}

int
nw_writev_all(const struct nw_writer *w, int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		ssize_t n;

		while (iovcnt > 0 && iov->iov_len == 0) {
			iov++;
			iovcnt--;
		}
		if (iovcnt == 0)
			break;
		n = writev(fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_writable(w, fd) == 0)
				continue;
			return -1;
		}
		while (n > 0) {
			if ((size_t)n >= iov->iov_len) {
				n -= (ssize_t)iov->iov_len;
				iov->iov_len = 0;
				iov++;
				iovcnt--;
			} else {
				iov->iov_base = (char *)iov->iov_base + n;
				iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

int
nw_send_all(const struct nw_writer *w, int fd, const void *p, size_t n)
{
	struct iovec iov = {(void *)p, n};

	return nw_writev_all(w, fd, &iov, 1);
}

int
nw_send_flags(
    const struct nw_writer *w, int fd, const void *p, size_t n, int flags)
{
	const char *s = p;

	while (n > 0) {
		ssize_t r = send(fd, s, n, flags | MSG_NOSIGNAL);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_writable(w, fd) == 0)
				continue;
			return -1;
		}
		s += r;
		n -= (size_t)r;
	}
	return 0;
}

int
nw_sendfile_all(const struct nw_writer *w, int fd, int in_fd, off_t off,
    uint64_t n, uint64_t *sent)
{
	*sent = 0;
	while (*sent < n) {
		size_t want =
		    n - *sent > (1u << 30) ? (1u << 30) : (size_t)(n - *sent);
		ssize_t r = sendfile(fd, in_fd, &off, want);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_writable(w, fd) == 0)
				continue;
			return -1;
		}
		if (r == 0)
			return -1; /* the file shrank under us */
		*sent += (uint64_t)r;
	}
	return 0;
}
