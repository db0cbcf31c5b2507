/* A worker: one event loop with its own evhttp, listener and connection
 * registry, and the commands the main loop sends it. Several workers each
 * run on a thread of their own. */
#ifndef GRACED_WORKER_H
#define GRACED_WORKER_H

#include <stdint.h>
#include <event2/event.h>

#include "graced.h"
#include "config.h"
#include "metrics.h"
#include "router.h"

struct worker;
struct listener_guard;

/* Commands from the main loop (worker_send), carried out on the worker's
 * own loop in this order. */
enum {
	WORKER_DRAIN = 1 << 0,          /* replies in flight will close */
	WORKER_STOP_ACCEPT = 1 << 1,    /* drop new SYNs, accept the queue */
	WORKER_CLOSE_LISTENER = 1 << 2, /* close it once its queue is empty */
	WORKER_CLOSE_IDLE = 1 << 3,     /* close idle keep-alive connections */
	WORKER_CLOSE_FRESH = 1 << 4,    /* ... and those that never spoke */
	WORKER_CUT_OFF = 1 << 5,        /* close everything */
	/* A successor serves the listener from now on: it is treated as
	 * shared (no filter, no backlog change, closed at once). Sent with
	 * WORKER_STOP_ACCEPT, it is carried out first. */
	WORKER_HAND_OVER = 1 << 6,
};

/* What a worker reports it has done (worker_done), each once. */
enum {
	WORKER_QUEUE_EMPTY = 1 << 0,     /* the closing listener's queue is */
	WORKER_LISTENER_CLOSED = 1 << 1, /* its listener is closed */
	WORKER_CUT_DONE = 1 << 2,        /* WORKER_CUT_OFF carried out */
};

/* What every worker is given; kept by pointer, it outlives the workers. */
struct worker_env {
	const struct graced_config *cfg;
	const struct router *router; /* complete before the first worker_new */
	struct graced_server *srv;   /* only handed back to handlers */
	struct event_base *main_base;
	int threaded; /* 1: each worker makes its own loop and thread */
	/* Called on the worker's loop when a report (worker_done) or the
	 * last connection of a stopping worker may be news for the main
	 * loop; must be safe from any thread. */
	void (*wake)(void *arg);
	/* Open connections over all workers, for --max-connections (any
	 * thread). */
	unsigned (*connections)(void *arg);
	void *arg;
};

/* Makes an event loop with the library's settings (epoll changelist, two
 * priorities). */
struct event_base *worker_base_new(void);
/* Makes worker id; its loop is the main one unless env->threaded. */
struct worker *worker_new(const struct worker_env *env, unsigned id);
/* Starts serving on the listening socket fd (taken over, closed on failure).
 * 0 or -errno. */
int worker_listen(struct worker *w, evutil_socket_t fd);
/* Marks the listener as shared with another process (adopted), before
 * worker_start: the drain closes it without filtering, shrinking or
 * waiting for its queue. */
void worker_share(struct worker *w);
/* Runs the worker's loop on a thread of its own. 0 or -errno. */
int worker_start(struct worker *w);
/* Sends commands (WORKER_* bits) from any thread. */
void worker_send(struct worker *w, unsigned cmds);
/* Stops the worker's loop and joins its thread. */
void worker_join(struct worker *w);
void worker_free(struct worker *w);

/* Read on any thread (atomics written by the worker's loop). */
/* Whether the worker has reported every bit of what (WORKER_QUEUE_EMPTY,
 * ...). */
int worker_done(const struct worker *w, unsigned what);
unsigned worker_connections(const struct worker *w);
unsigned worker_in_flight(const struct worker *w);
const struct metrics *worker_metrics(const struct worker *w);
/* The public listener's accept failures. */
const struct listener_guard *worker_guard(const struct worker *w);

#endif
