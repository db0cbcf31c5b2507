/* Listening sockets: bind, and close without resetting the accept queue. */
#ifndef GRACED_LISTENER_H
#define GRACED_LISTENER_H

#include <stddef.h>
#include "config.h"

/* Binds and listens on addr. Returns the fd, or a negative errno with a
 * one-line reason in err. */
int listener_open(
    const struct config_addr *addr, int reuseport, char *err, size_t errlen);
/* Makes the kernel drop every new SYN for fd, so its queue can only shrink.
 * Returns 0 or a negative errno (EPERM where unprivileged processes may not
 * attach socket filters). */
int listener_filter_syns(int fd);
/* The fallback: a backlog of 0 drops new SYNs while anything is queued.
 * Returns 0 or a negative errno. */
int listener_shrink_backlog(int fd);
/* Connections waiting in fd's accept queue, or a negative errno. */
int listener_queue_len(int fd);
/* Writes the bound address of fd as "HOST:PORT". */
void listener_address(int fd, char *buf, size_t len);

#endif
