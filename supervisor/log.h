/*
 * log.h: the master's one way to say something.
 *
 * Lines go to the error log (stderr by default) with a timestamp, the pid and
 * the level, or with a syslog priority prefix when stderr is the journal.
 * Logging never fails loudly: a full disk must not stop the master.
 */
#ifndef NW_LOG_H
#define NW_LOG_H

#include "config.h"

void nw_log_init(enum nw_loglevel level);
/* Points the log at path ("-" or NULL: stderr); reopened on USR1. */
int nw_log_open(const char *path);
void nw_log_reopen(void);
void nw_log_set_level(enum nw_loglevel level);

void nw_log(enum nw_loglevel level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define nw_debug(...) nw_log(NW_LOG_DEBUG, __VA_ARGS__)
#define nw_info(...) nw_log(NW_LOG_INFO, __VA_ARGS__)
#define nw_warn(...) nw_log(NW_LOG_WARNING, __VA_ARGS__)
#define nw_error(...) nw_log(NW_LOG_ERROR, __VA_ARGS__)

#endif
