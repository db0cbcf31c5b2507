/* Listening sockets: bind, and close without resetting the accept queue. */
#ifndef GRACED_LISTENER_H
#define GRACED_LISTENER_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"

/* How listener_open shares the port. A group's first socket is bound
 * without SO_REUSEPORT, so the bind fails if any other socket holds the
 * port (a second instance started by mistake), and only then joins a
 * group that the rest of the same process's sockets join. */
enum listener_share {
	LISTENER_ALONE, /* one socket on the port */
	LISTENER_FIRST, /* the first of a SO_REUSEPORT group: exclusive bind */
	LISTENER_JOIN,  /* another socket of that group */
};

/* Binds and listens on addr. Returns the fd, or a negative errno with a
 * one-line reason in err. */
int listener_open(const struct config_addr *addr, enum listener_share share,
    char *err, size_t errlen);
/* Makes the kernel drop every new SYN for fd, so its queue can only shrink.
 * Returns 0 or a negative errno (EPERM where unprivileged processes may not
 * attach socket filters, EOPNOTSUPP where there are none). */
int listener_filter_syns(int fd);
/* The fallback: a backlog of 0 drops new SYNs while anything is queued.
 * Returns 0 or a negative errno. */
int listener_shrink_backlog(int fd);
/* Connections waiting in fd's accept queue, or a negative errno. Without
 * TCP_INFO's tcpi_unacked it only tells 1 (some) from 0 (none). */
int listener_queue_len(int fd);
/* The backlog an adopted socket found at 0 gets back: graced.socket's
 * Backlog= (the kernel caps it at net.core.somaxconn). */
#define LISTENER_ADOPT_BACKLOG 4096
/* Takes over fd, a listening socket another process made and may still
 * hold (socket activation): checks it is a listening SOCK_STREAM socket,
 * makes it close-on-exec and non-blocking, and heals what a predecessor
 * killed in the middle of its drain may have left on it: its SYN filter is
 * detached, and a backlog of 0 is set back to LISTENER_ADOPT_BACKLOG.
 * Returns 0 or a negative errno with a one-line reason in err. */
int listener_adopt(int fd, char *err, size_t errlen);
/* Writes the bound address of fd as "HOST:PORT". */
void listener_address(int fd, char *buf, size_t len);

/*
 * Accept failures. When accept() fails for want of descriptors or memory,
 * the listener pauses for LISTENER_BACKOFF_MS and resumes by itself; each
 * failure is counted by errno, and logged ("accept_failed") at most once a
 * second. One guard per listener, made on the loop that runs it.
 */
#define LISTENER_BACKOFF_MS 50
/* errno labels of graced_accept_errors_total; the last is "other". */
#define LISTENER_NERRNOS 5
extern const char *const listener_errno_names[LISTENER_NERRNOS];

struct listener_guard;

/* name is the "listener" label ("public", "admin"); NULL without memory. */
struct listener_guard *listener_guard_new(
    struct event_base *base, const char *name);
/* Watches lev's accept errors (one listener at a time), from its loop. */
void listener_guard_attach(
    struct listener_guard *g, struct evconnlistener *lev);
/* Before lev is freed: forgets it and cancels a pending resume. */
void listener_guard_detach(struct listener_guard *g);
void listener_guard_free(struct listener_guard *g);
/* Failures counted under listener_errno_names[i] (any thread). */
uint64_t listener_guard_errors(const struct listener_guard *g, size_t i);

#endif
