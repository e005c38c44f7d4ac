/*
 * log.h: the worker's log lines and its access log, at the bottom of the
 * stack so that every layer above can log without calling up into one.
 *
 * No Python here. A log line goes to stderr in one write (the master relays
 * stderr line by line); access log lines are formatted into a buffer the
 * caller owns and writes out once per loop turn.
 */
#ifndef NW_CORE_LOG_H
#define NW_CORE_LOG_H

#include <stdarg.h>

#include "core/http.h"

/* log.c */
void nw_vlog(const char *fmt, va_list ap);
void nw_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* accesslog.c: gunicorn's default format */
#define NW_ACCESSLOG_FLUSH_AT (64 * 1024)
int nw_accesslog_open_path(const char *path);
int nw_accesslog_reopen_path(const char *path, int *fd);
void nw_accesslog_write(int fd, struct nw_buf *b);
void nw_accesslog_format(struct nw_buf *b, const char *host,
    const struct nw_clock *clk, const char *buf, const struct nw_request *req,
    int status, uint64_t sent);

#endif
