/*
 * http.h: the HTTP/1.x core under the engine and every driver.
 *
 * The request parser, the chunked body decoder, growable buffers, response
 * framing, the blocking writers and the clock live behind this header.
 * Nothing declared here knows about Python, sockets' owners or drivers; the
 * C unit tests link it alone.
 */
#ifndef NW_CORE_HTTP_H
#define NW_CORE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/* A growable byte buffer; data may be NULL while cap is 0. */
struct nw_buf {
	char *data;
	size_t len;
	size_t cap;
};

int nw_buf_reserve(struct nw_buf *b, size_t extra);
int nw_buf_append(struct nw_buf *b, const void *p, size_t n);
int nw_buf_appendstr(struct nw_buf *b, const char *s);
int nw_buf_appendu(struct nw_buf *b, uint64_t v);
void nw_buf_free(struct nw_buf *b);

/* Limits on a request head and body; 0 means "unlimited" (hard caps apply). */
struct nw_limits {
	size_t request_line; /* bytes in the request line, without CR LF */
	size_t fields;       /* header fields */
	size_t field_size;   /* bytes in one header line, without CR LF */
	uint64_t body;       /* decoded body bytes */
};

enum nw_parse_result {
	NW_PARSE_ERROR = -1, /* req->status says which 4xx to answer */
	NW_PARSE_AGAIN = 0,  /* need more bytes */
	NW_PARSE_DONE = 1,
};

/* A span of the request buffer: offsets stay valid when it is realloc'd. */
struct nw_span {
	uint32_t off;
	uint32_t len;
};

struct nw_header {
	struct nw_span name;
	struct nw_span value;
};

/* The chunked transfer-coding decoder, a byte-level state machine. */
struct nw_chunked {
	int state;
	uint64_t size; /* bytes left in the current chunk */
	unsigned ndigits;
	size_t line;     /* bytes in the current size or trailer line */
	size_t trailers; /* trailer bytes seen */
};

/*
 * One request head, parsed from a buffer that starts at the request's first
 * byte. All spans are relative to that start.
 */
struct nw_request {
	/* scanning state: the head may arrive in many reads */
	size_t scan;       /* next byte to look at */
	size_t line_start; /* first byte of the current line */
	size_t nlines;     /* complete lines so far (request line included) */
	size_t skipped;    /* empty lines before the request line */

	/* results, valid after NW_PARSE_DONE */
	size_t head_len;     /* bytes through the empty line */
	struct nw_span line; /* the request line, for the access log */
	struct nw_span method;
	struct nw_span target;
	struct nw_span path;  /* target up to '?' or '#', origin or absolute */
	struct nw_span query; /* after '?', up to '#' */
	int minor;            /* HTTP/1.<minor> */
	struct nw_header *headers;
	size_t nheaders;
	size_t headers_cap;
	int64_t content_length; /* -1 when absent */
	bool chunked;
	bool keep_alive;
	bool expect_continue;
	bool is_head;
	int status; /* the 4xx to answer after NW_PARSE_ERROR */
};

/* 1 for the bytes allowed in a token (method, header name). */
extern const unsigned char nw_tchar[256];

void nw_request_reset(struct nw_request *r);
void nw_request_free(struct nw_request *r);
int nw_request_parse(struct nw_request *r, const char *buf, size_t len,
    const struct nw_limits *lim);
/* Case-insensitive lookup of the first header with that name, or NULL. */
const struct nw_header *nw_request_header(const struct nw_request *r,
    const char *buf, const char *name, size_t namelen);

/* %XX decoding of a path into out (n bytes at most); returns its length. */
size_t nw_percent_decode(const char *p, size_t n, char *out);
/*
 * A path with a %XX in it, decoded into scratch: *p and *n then point there.
 * Returns 0, or -1 out of memory.
 */
int nw_path_decode(struct nw_buf *scratch, const char **p, size_t *n);

void nw_chunked_init(struct nw_chunked *c);
/*
 * Decodes in place: data[0..*len) is replaced by the decoded bytes, and
 * *len is set to their count. Returns the input bytes consumed, and sets
 * *done once the last chunk and the trailers are read; -1 on bad framing.
 */
ssize_t nw_chunked_decode(
    struct nw_chunked *c, char *data, size_t *len, bool *done);

/*
 * The writers block (poll) until everything is sent, the peer is gone, or
 * the timeout passes between two writes. wait() replaces poll() so a caller
 * can drop a lock while it sleeps; it returns -1 to abort.
 */
struct nw_writer {
	int timeout_ms;
	int (*wait)(void *arg, int fd, int timeout_ms);
	void *arg;
};

int nw_writev_all(
    const struct nw_writer *w, int fd, struct iovec *iov, int iovcnt);
int nw_send_all(const struct nw_writer *w, int fd, const void *p, size_t n);
/* send(2) with flags, e.g. MSG_MORE before a sendfile. */
int nw_send_flags(
    const struct nw_writer *w, int fd, const void *p, size_t n, int flags);
int nw_sendfile_all(const struct nw_writer *w, int fd, int in_fd, off_t off,
    uint64_t n, uint64_t *sent);

/* A complete error response with "Connection: close", for 4xx/5xx. */
const char *nw_error_response(int status, size_t *len);
const char *nw_status_reason(int status);

/* A clock read once per loop turn, with the Date header formatted per second.
 */
struct nw_clock {
	int64_t mono_ms; /* CLOCK_MONOTONIC_COARSE */
	time_t wall;     /* seconds since the epoch */
	char date[40];   /* "Date: Sat, 21 Nov 2026 12:00:00 GMT\r\n" */
	size_t date_len;
	char logtime[32]; /* "[21/Nov/2026:12:00:00 +0000]" */
	size_t logtime_len;
};

void nw_clock_update(struct nw_clock *c);

/*
 * nw_error_response with the clock's Date header in it, as three pieces
 * for writev: the head, the Date line, then the blank line and the body.
 * Returns the body's length, for the access log.
 */
size_t nw_error_iov(
    int status, const struct nw_clock *clock, struct iovec iov[3]);

/*
 * What nw_head_add_header noticed about an app's response headers. The
 * caller seeds it (content_length -1 when none yet) and reads it back.
 */
struct nw_head_info {
	int64_t content_length; /* the app's, or -1 */
	bool app_close;         /* the app said "Connection: close" */
	bool has_date;
};

enum {
	NW_HEAD_OK = 0,
	NW_HEAD_BAD_NAME = -1,
	NW_HEAD_BAD_VALUE = -2,
	NW_HEAD_BAD_CL = -3,
	NW_HEAD_NOMEM = -4,
};

/*
 * Checks one response header, notes in info what the server must know,
 * drops the hop-by-hop ones the server owns and appends the rest to head
 * as "name: value\r\n". Returns NW_HEAD_OK or one of the errors above.
 */
int nw_head_add_header(struct nw_buf *head, const char *name, size_t namelen,
    const char *value, size_t valuelen, struct nw_head_info *info);

/*
 * What the server adds after the app's headers: framing when the app gave
 * no Content-Length (the known size; chunks on HTTP/1.1; the close on
 * HTTP/1.0; nothing for HEAD, 1xx, 204, 304), Connection, the Date unless
 * the app sent one, and the blank line. Returns 0, or -1 out of memory.
 */
struct nw_head_end {
	int status;
	int minor;     /* the request's HTTP/1.minor */
	bool is_head;
	bool keep;     /* the client and the server would keep it alive */
	int64_t known; /* the body's size when known, or -1 */
	bool chunked;  /* out: the body goes in chunks */
	bool close;    /* in: closing already decided; out: close afterwards */
};

int nw_head_finish(struct nw_buf *head, const struct nw_head_info *info,
    struct nw_head_end *e, const struct nw_clock *clock);

#endif
