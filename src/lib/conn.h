/* The connection registry of one loop, and the record of each connection,
 * which is also the public struct graced_request. It reports up through
 * the callback its owner gave it, never by calling its owner. */
#ifndef GRACED_CONN_H
#define GRACED_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "graced.h"
#include "config.h"
#include "framing.h"
#include "metrics.h"
#include "router.h"

struct conn_set;

/*
 * One record per accepted connection. evhttp serves one request at a time on
 * a connection, so the record is also the public struct graced_request;
 * request.c, the public face of it, reads these fields too.
 */
struct graced_request {
	struct conn_set *set;
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
	uint64_t
	    started_us;    /* handler entry (duration histogram, access log) */
	size_t route;      /* route id of req, for metrics */
	unsigned requests; /* requests dispatched so far */
	int fd;
	unsigned rx_pending : 1; /* bytes received, not yet a request */
	unsigned replied : 1;    /* reply sent for req */
	unsigned overloaded : 1; /* accepted past max-connections */
	unsigned capped : 1;     /* input watermark set (conn_limit_input) */

	/* For the access log. */
	size_t body_in;                      /* request body bytes */
	struct evbuffer_cb_entry *output_cb; /* sees evhttp's own replies */
};

/* What the registry tells its owner, on the owner's loop. */
enum conn_news {
	CONN_ACCEPTED, /* a connection was accepted, not adopted yet */
	CONN_ADOPTED,  /* ... and is tracked: the owner returns 1 if it is
	                  one too many (past --max-connections), else 0 */
	CONN_GONE,     /* a connection closed (conn_count is already less) */
};
typedef int conn_news_fn(void *arg, enum conn_news news);

/* What the owner gives a registry; kept by pointer, so it must outlive the
 * registry. srv is only handed back by graced_request_server(). */
struct conn_env {
	const struct graced_config *cfg;
	const struct router *router; /* fixed before the registry is made */
	struct graced_server *srv;
	struct event_base *base; /* the loop every call below runs on */
	conn_news_fn *news;
	void *arg;
};

/* A registry for the connections of one loop; NULL without memory. */
struct conn_set *conn_set_new(const struct conn_env *env);
/* After evhttp_free, whose close callbacks empty the registry. */
void conn_set_free(struct conn_set *s);
/* evhttp's bufferevent callback (evhttp_set_bevcb, with s as its arg). */
struct bufferevent *conn_bevcb(struct event_base *base, void *arg);
/* The record of req's connection, or NULL if it was never adopted. */
struct graced_request *conn_find(
    struct conn_set *s, struct evhttp_request *req);

/* A handler took req on r: count it until complete or closed. Its route is
 * "no route" until conn_route() says otherwise. */
void conn_request_begin(struct graced_request *r, struct evhttp_request *req);
void conn_route(struct graced_request *r, size_t id);
/* Whether r came past --max-connections (its requests get 503). */
int conn_overloaded(const struct graced_request *r);
/* Why the request just begun on r must be refused (FRAMING_OK: it need
 * not). */
enum framing_verdict conn_verdict(const struct graced_request *r);

/* What graced_request_server() and graced_request_base() return. */
struct graced_server *conn_server(const struct graced_request *r);
struct event_base *conn_base(const struct graced_request *r);

/* Commands over the whole registry, from its loop. */
/* Replies not sent yet will carry Connection: close. */
void conn_mark_close(struct conn_set *s);
/* Closes idle keep-alive connections, and with fresh those that never sent
 * a byte. */
void conn_close_idle(struct conn_set *s, int fresh);
/* Closes every connection; counts those with a request in flight or half
 * received as cut off (metrics) and returns how many. */
unsigned conn_cut_off(struct conn_set *s);
/* Closes connections whose request has been arriving for limit_ms. */
void conn_sweep(struct conn_set *s, uint64_t limit_ms);

/* Read on any thread (relaxed atomics, written by the registry's loop). */
unsigned conn_count(const struct conn_set *s);
unsigned conn_in_flight(const struct conn_set *s);
const struct metrics *conn_metrics(const struct conn_set *s);

#endif
