/* A worker: one event loop with its own evhttp, listener, connections and
 * counters. Every per-connection thing lives here, so that several workers
 * can each run on a thread of their own. */
#ifndef GRACED_WORKER_H
#define GRACED_WORKER_H

#include <stdint.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "graced.h"
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
	struct evbuffer_cb_entry *input_cb; /* counts bytes received */
	struct evhttp_request *req;         /* held by a handler, or NULL */
	void (*abort_fn)(struct graced_request *, void *);
	void *abort_arg;
	struct graced_request *next_new; /* adoption queue */
	uint64_t rx_since_ms;            /* first unserved byte arrived */
	uint64_t started_us;             /* handler entry of req */
	size_t route;                    /* route id of req, for metrics */
	unsigned requests;               /* requests dispatched so far */
	int fd;
	unsigned rx_pending : 1; /* bytes received, not yet a request */
	unsigned replied : 1;    /* reply sent for req */
	unsigned overloaded : 1; /* accepted past max-connections */
};

struct worker {
	struct graced_server *srv;
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *listener;
	struct evhttp_bound_socket *bound;
	evutil_socket_t lfd;           /* -1 once closed */
	struct graced_request **conns; /* indexed by fd */
	size_t conns_cap;
	struct graced_request *new_head; /* accepted, not adopted yet */
	struct event *adopt_ev;          /* priority 0: adopt new connections */
	struct event *close_check_ev; /* listener closing: queue empty yet? */
	struct event *sweep_ev;       /* request-timeout sweep */
	struct event *backoff_ev;     /* accept paused after EMFILE */
	unsigned nconns;              /* open connections */
	unsigned in_flight;           /* requests held by handlers */
	int closing;                  /* listener is draining its queue */
	struct metrics metrics;
};

struct worker *worker_new(struct graced_server *srv, struct event_base *base);
/* Starts serving on the listening socket fd (taken over). 0 or -errno. */
int worker_listen(struct worker *w, evutil_socket_t fd);
/* DRAINING began: replies to requests in flight will close. */
void worker_drain_begin(struct worker *w);
/* STOPPING: stop accepting without resetting queued connections, then
 * report through drain_check(). */
void worker_stop_listening(struct worker *w);
/* Closes idle keep-alive connections; also the ones that never sent a byte
 * when fresh is set. */
void worker_close_idle(struct worker *w, int fresh);
/* Closes every connection and the listener. Returns the requests cut off
 * (in flight, or partly received). */
unsigned worker_cut_off(struct worker *w);
void worker_free(struct worker *w);

/* Connection registry (conn.c). */
struct bufferevent *conn_bevcb(struct event_base *base, void *arg);
void conn_adopt_cb(evutil_socket_t fd, short what, void *arg);
struct graced_request *conn_find(struct worker *w, struct evhttp_request *req);
/* A handler took req on r: count it until complete or closed. */
void conn_request_begin(struct graced_request *r, struct evhttp_request *req);
int conn_is_idle(const struct graced_request *r);
int conn_is_fresh(const struct graced_request *r);

#endif
