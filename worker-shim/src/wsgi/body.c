/*
 * body.c: a WSGI request body, kept whole before the app is called.
 *
 * The engine decodes the body and checks its limits; this keeps what it
 * hands over, in memory while small and in an unlinked temporary file in
 * TMPDIR past NW_BODY_MEM_MAX, and turns it into wsgi.input (input.c).
 * limit_request_body bounds one body; spool_max bounds what all the bodies
 * still arriving on this worker may put on disk at once (a body that would
 * pass it is answered 503), so no number of uploads fills the disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wsgi/wsgi.h"

static int
open_tmpfile(struct nw_wsgi *s)
{
	char path[4096];
	int fd;

	fd = open(s->tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	snprintf(path, sizeof path, "%s/narwhal-body-XXXXXX", s->tmpdir);
	if ((fd = mkostemp(path, O_CLOEXEC)) < 0)
		return -1;
	unlink(path);
	return fd;
}

static int
write_file(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
body_spill(struct nw_wsgi *s, struct nw_wsgi_body *b)
{
	if ((b->fd = open_tmpfile(s)) < 0) {
		nw_log("cannot create a temporary file in %s: %s", s->tmpdir,
		    strerror(errno));
		return -1;
	}
	if (write_file(b->fd, b->mem.data, b->mem.len) < 0)
		return -1;
	b->mem.len = 0;
	nw_buf_free(&b->mem);
	return 0;
}

/*
 * Keeps n more bytes; expected: what is still to come after them, when
 * known (a large declared body goes to disk from its first byte).
 * Returns 0, or -1 (the engine answers 500).
 */
int
nw_wsgi_body_add(struct nw_wsgi *s, struct nw_wsgi_body *b, const char *p,
    size_t n, uint64_t expected)
{
	size_t moved = b->fd < 0 ? b->mem.len : 0;

	if (b->fd < 0 && b->mem.len + n + expected > NW_BODY_MEM_MAX) {
		if (s->spooled + moved + n > s->spool_max)
			return -2;
		if (body_spill(s, b) < 0)
			return -1;
		s->spooled += moved;
		b->on_disk += moved;
	}
	b->size += n;
	if (n == 0)
		return 0;
	if (b->fd < 0)
		return nw_buf_append(&b->mem, p, n);
	if (s->spooled + n > s->spool_max)
		return -2;
	s->spooled += n;
	b->on_disk += n;
	return write_file(b->fd, p, n);
}

/*
 * The body is the app's now (or gone): it no longer counts as arriving.
 * The count is the loop thread's: once released, a body's reset (on a
 * pool thread) leaves it alone.
 */
void
nw_wsgi_body_release(struct nw_wsgi *s, struct nw_wsgi_body *b)
{
	if (b->on_disk == 0)
		return;
	s->spooled -= b->on_disk;
	b->on_disk = 0;
}

/* wsgi.input over what was kept; the file, if any, is its now. */
PyObject *
nw_wsgi_body_input(struct nw_wsgi_body *b)
{
	PyObject *input;

	if (b->fd >= 0) {
		input = nw_input_from_fd(b->fd, b->size);
		b->fd = -1;
	} else {
		input = nw_input_from_mem(b->mem.data, b->mem.len);
	}
	return input;
}

/* Empty again for the next request; small buffers are kept. */
void
nw_wsgi_body_reset(struct nw_wsgi *s, struct nw_wsgi_body *b)
{
	nw_wsgi_body_release(s, b);
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	b->size = 0;
	b->mem.len = 0;
	if (b->mem.cap > 64 * 1024)
		nw_buf_free(&b->mem);
}

void
nw_wsgi_body_free(struct nw_wsgi *s, struct nw_wsgi_body *b)
{
	nw_wsgi_body_reset(s, b);
	nw_buf_free(&b->mem);
}
