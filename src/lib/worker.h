/* A worker: one event loop with its own evhttp, listener, connections and
 * counters. Every per-connection thing lives here, so that several workers
 * can each run on a thread of their own. */
#ifndef GRACED_WORKER_H
#define GRACED_WORKER_H

#include <pthread.h>
#include <stdint.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "graced.h"
#include "framing.h"
#include "metrics.h"

struct graced_server;

/*
 * One record per accepted connection. evhttp serves one request at a time on
 * a connection, so the record is also the public struct graced_request.
 */
struct graced_request {
	struct worker *w;
	struct evhttp_connection *evcon;
	struct bufferevent *bev;
	struct evbuffer_cb_entry *input_cb;   /* counts bytes received */
	struct evbuffer_cb_entry *framing_cb; /* checks every byte received */
	struct framing fr;          /* where the checker is in the input */
	struct evhttp_request *req; /* held by a handler, or NULL */
	void (*abort_fn)(struct graced_request *, void *);
	void *abort_arg;
	struct graced_request *next_new; /* adoption queue */
	uint64_t rx_since_ms;            /* first unserved byte arrived */
	uint64_t started_us; /* handler entry (for the access log) */
	size_t route;        /* route id of req, for metrics */
	unsigned requests;   /* requests dispatched so far */
	int fd;
	unsigned rx_pending : 1; /* bytes received, not yet a request */
	unsigned replied : 1;    /* reply sent for req */
	unsigned overloaded : 1; /* accepted past max-connections */
	unsigned capped : 1;     /* input watermark set (conn_limit_input) */

	/* For the access log. */
	size_t body_in;                      /* request body bytes */
	struct evbuffer_cb_entry *output_cb; /* sees evhttp's own replies */
};

/* Commands from the main loop (bits of worker.cmds), carried out on the
 * worker's own loop in this order. */
enum {
	WORKER_DRAIN = 1 << 0,          /* replies in flight will close */
	WORKER_STOP_ACCEPT = 1 << 1,    /* drop new SYNs, accept the queue */
	WORKER_CLOSE_LISTENER = 1 << 2, /* close it once its queue is empty */
	WORKER_CLOSE_IDLE = 1 << 3,     /* close idle keep-alive connections */
	WORKER_CLOSE_FRESH = 1 << 4,    /* ... and those that never spoke */
	WORKER_CUT_OFF = 1 << 5,        /* close everything */
};

/* A worker's fields belong to its own loop, except where a comment names
 * another thread and how it reads or writes. */
struct worker {
	struct graced_server *srv;
	unsigned id;
	struct event_base *base; /* its loop (the main one if own_base is 0) */
	int own_base;            /* 0: runs on the main loop */
	pthread_t thread;        /* main thread only, like running */
	int running;             /* thread started, not joined */
	struct evhttp *http;
	struct evconnlistener *listener;
	struct evhttp_bound_socket *bound;
	evutil_socket_t lfd;           /* -1 once closed */
	struct graced_request **conns; /* indexed by fd */
	size_t conns_cap;
	struct graced_request *new_head; /* accepted, not adopted yet */
	struct event *adopt_ev;          /* priority 0: adopt new connections */
	struct event *cmd_ev;            /* the main loop sent commands */
	struct event *close_check_ev; /* listener closing: queue empty yet? */
	struct event *sweep_ev;       /* request-timeout sweep */
	/* Accept failures: pause, count. Its counters are read by /metrics on
	 * any thread (listener_guard_errors). */
	struct listener_guard *guard;
	int closing;      /* listener is draining its queue */
	int close_wanted; /* close the listener once empty */
	/* Pending commands: any thread ORs bits in (worker_send), the worker
	 * takes them all with an atomic exchange. */
	unsigned cmds;
	/* Written by the worker (COUNTER_ADD), read on any thread by /healthz,
	 * /metrics and the drain (COUNTER_GET). */
	unsigned nconns;    /* open connections, adopting or not */
	unsigned in_flight; /* requests held by handlers */
	/* Set by the worker (SHARED_SET), read by the main loop (SHARED_GET). */
	int queue_empty; /* the closing listener's queue is empty */
	int listener_closed;
	int cut_done; /* WORKER_CUT_OFF carried out */
	/* Written by the worker (COUNTER_ADD), summed by /metrics and the drain
	 * on any thread (COUNTER_GET). */
	struct metrics metrics;
};

/* Makes worker id for srv with its own event loop. */
struct worker *worker_new(struct graced_server *srv, unsigned id);
/* Starts serving on the listening socket fd (taken over, closed on failure).
 * 0 or -errno. */
int worker_listen(struct worker *w, evutil_socket_t fd);
/* Runs the worker's loop on a thread of its own. 0 or -errno. */
int worker_start(struct worker *w);
/* Sends commands (WORKER_* bits) from any thread. */
void worker_send(struct worker *w, unsigned cmds);
/* Stops the worker's loop and joins its thread. */
void worker_join(struct worker *w);
void worker_free(struct worker *w);

/* Connection registry (conn.c). */
struct bufferevent *conn_bevcb(struct event_base *base, void *arg);
void conn_adopt_cb(evutil_socket_t fd, short what, void *arg);
struct graced_request *conn_find(struct worker *w, struct evhttp_request *req);
/* A handler took req on r: count it until complete or closed. */
void conn_request_begin(struct graced_request *r, struct evhttp_request *req);
int conn_is_idle(const struct graced_request *r);
int conn_is_fresh(const struct graced_request *r);
/* Why the request just begun on r must be refused (FRAMING_OK: it need
 * not). */
enum framing_verdict conn_verdict(const struct graced_request *r);

#endif
