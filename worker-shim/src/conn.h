/*
 * conn.h: socket helpers shared by the WSGI loop (server.c, module.c) and
 * the ASGI loop (asgi_listen.c). Nothing here knows about Python.
 */
#ifndef NW_CONN_H
#define NW_CONN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Room for a listener's host: an address, or a Unix path with its '@'. */
#define NW_HOST_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) + 2)

/* nw_accept's failures: stop for now, try again, or back off (fds/memory). */
#define NW_ACCEPT_STOP (-1)
#define NW_ACCEPT_RETRY (-2)
#define NW_ACCEPT_BUSY (-3)

void nw_vlog(const char *fmt, va_list ap);
int nw_accept(int lfd, bool tcp, struct sockaddr_storage *peer,
    socklen_t *plen);
int nw_sock_name(int fd, char host[NW_HOST_MAX], int *port);
bool nw_peer_is_local(int fd, const struct sockaddr_storage *peer);

#endif
