/*
 * wsgi.h: the WSGI driver's state, shared by the files of wsgi/.
 *
 * The driver runs the engine's loop itself: it blocks in epoll_wait with
 * the GIL released (server.c) and calls the app in place once the engine
 * hands it a request whose body has come whole (body.c keeps it, in memory
 * or spilled to a temporary file). The app's answer is written in place
 * too, blocking without the GIL (response.c). Nothing here re-implements
 * what the engine does.
 */
#ifndef NW_WSGI_H
#define NW_WSGI_H

#include "engine/engine.h"
#include "py/py.h"

/* Request bodies up to this size stay in memory; larger ones spill to disk. */
#define NW_BODY_MEM_MAX (1024 * 1024)

/* A request body, kept whole for wsgi.input. */
struct nw_wsgi_body {
	struct nw_buf mem; /* the body while it is small */
	int fd;            /* the unlinked file it spilled to, or -1 */
	uint64_t size;     /* bytes kept */
	uint64_t on_disk;  /* of them, counted in nw_wsgi.spooled */
};

/* The engine's connection, and what the driver keeps with it. */
struct nw_wsgi_conn {
	struct nw_conn c;
	struct nw_wsgi_body body;
	PyObject *remote_addr; /* made at the first request, then reused */
	PyObject *remote_port;
};

#define NW_WSGI_CONN(conn) ((struct nw_wsgi_conn *)(conn))

struct nw_wsgi {
	struct nw_engine e; /* first: the driver's callbacks get &e */
	int64_t graceful_ms;
	struct nw_writer writer; /* blocking writes, the GIL released */
	char *tmpdir;            /* where big bodies spill */
	uint64_t spooled;        /* on disk for bodies still arriving... */
	uint64_t spool_max;      /* ...at most: see body.c */
	bool running;
	bool quit;           /* INT/QUIT: leave the loop now */
	bool fatal;          /* a Python exception must leave serve() */

	/* Python */
	PyObject *app;
	PyObject *errors;      /* wsgi.errors */
	PyObject *script_name; /* str, "" when unset */
	char *script_name_b;   /* its latin-1 bytes */
	size_t script_name_len;
	PyObject *start_response; /* reused while nobody else holds it */
	struct nw_buf head;       /* the response head being built */
	struct nw_buf scratch;    /* decoding PATH_INFO and the like */
};

#define NW_WSGI(engine) ((struct nw_wsgi *)(engine))

/* server.c: the Server type and its loop */
int nw_wsgi_server_init(PyObject *module);

/* body.c: a request body, kept whole */
int nw_wsgi_body_add(struct nw_wsgi *s, struct nw_wsgi_body *b,
    const char *p, size_t n, uint64_t expected);
PyObject *nw_wsgi_body_input(struct nw_wsgi_body *b);
void nw_wsgi_body_release(struct nw_wsgi *s, struct nw_wsgi_body *b);
void nw_wsgi_body_reset(struct nw_wsgi *s, struct nw_wsgi_body *b);
void nw_wsgi_body_free(struct nw_wsgi *s, struct nw_wsgi_body *b);

/* environ.c */
int nw_wsgi_environ_init(void);
PyObject *nw_wsgi_base_environ(struct nw_wsgi *s, PyObject *server_name,
    PyObject *server_port, bool tls);
PyObject *nw_wsgi_environ(struct nw_wsgi *s, struct nw_conn *c,
    PyObject *input);

/* response.c: answers one complete request; returns one of these */
enum nw_handled {
	NW_HANDLED_FATAL = -1, /* a Python exception must leave serve() */
	NW_HANDLED_KEEP = 0,
	NW_HANDLED_CLOSE = 1,
};
int nw_wsgi_response_init(void);
int nw_wsgi_handle(struct nw_wsgi *s, struct nw_conn *c, PyObject *input);

/* input.c: wsgi.input */
int nw_input_init(PyObject *module);
PyObject *nw_input_from_mem(const char *p, size_t n);
PyObject *nw_input_from_fd(int fd, uint64_t size); /* owns fd */

/* filewrapper.c: wsgi.file_wrapper */
extern PyObject *nw_filewrapper_type;
int nw_filewrapper_init(PyObject *module);
PyObject *nw_filewrapper_filelike(PyObject *wrapper);

#endif
