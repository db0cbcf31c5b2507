/* The admin listener. POST /admin/drain starts a drain; with ?wait=1 the
 * reply is held until the public listeners have closed, which is what a
 * Kubernetes preStop hook waits for. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "admin.h"
#include "health.h"
#include "metrics.h"
#include "request.h"
#include "server.h"
#include "util.h"
#include "worker.h"

struct waiter {
	struct admin *a;
	struct evhttp_request *req;
	struct waiter *next, *prev;
};

struct admin {
	struct graced_server *srv;
	struct evhttp *http;
	struct waiter *waiters;
	unsigned sending; /* released replies not flushed yet */
};

static void
reply_json(struct evhttp_request *req, int status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	json_decref(body);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	if (text != NULL)
		evbuffer_add(out, text, strlen(text));
	free(text);
	request_send(req, status);
}

static void
reply_error(struct evhttp_request *req, int status, const char *message)
{
	reply_json(req, status,
	    json_pack("{s:s,s:i}", "error", message, "status", status));
}

static void
waiter_unlink(struct waiter *wt)
{
	if (wt->prev != NULL)
		wt->prev->next = wt->next;
	else
		wt->a->waiters = wt->next;
	if (wt->next != NULL)
		wt->next->prev = wt->prev;
	evhttp_connection_set_closecb(
	    evhttp_request_get_connection(wt->req), NULL, NULL);
	free(wt);
}

static void
waiter_gone(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	waiter_unlink(arg);
}

/* A released reply is flushed, or its connection is gone: once none is
 * left, a stopped server may leave its loop. */
static void
sent(struct admin *a)
{
	if (--a->sending == 0 && a->srv->state == GRACED_STOPPED)
		event_base_loopexit(a->srv->base, NULL);
}

static void
sent_gone(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	sent(arg);
}

static void
sent_cb(struct evhttp_request *req, void *arg)
{
	evhttp_connection_set_closecb(
	    evhttp_request_get_connection(req), NULL, NULL);
	sent(arg);
}

unsigned
admin_sending(const struct admin *a)
{
	return a == NULL ? 0 : a->sending;
}

void
admin_release(struct admin *a)
{
	if (a == NULL || !drain_listeners_closed(a->srv))
		return;
	while (a->waiters != NULL) {
		struct evhttp_request *req = a->waiters->req;
		waiter_unlink(a->waiters);
		a->sending++;
		evhttp_request_set_on_complete_cb(req, sent_cb, a);
		evhttp_connection_set_closecb(
		    evhttp_request_get_connection(req), sent_gone, a);
		reply_json(req, 200,
		    json_pack(
		        "{s:s}", "state", graced_state_name(a->srv->state)));
	}
}

static void
drain(struct admin *a, struct evhttp_request *req)
{
	const char *query =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct waiter *wt;

	drain_begin(a->srv, "admin");
	if (query == NULL || strstr(query, "wait") == NULL ||
	    drain_listeners_closed(a->srv)) {
		reply_json(req, drain_listeners_closed(a->srv) ? 200 : 202,
		    json_pack(
		        "{s:s}", "state", graced_state_name(a->srv->state)));
		return;
	}
	wt = calloc(1, sizeof(*wt));
	if (wt == NULL) {
		reply_error(req, 503, "out of memory");
		return;
	}
	wt->a = a;
	wt->req = req;
	wt->next = a->waiters;
	if (a->waiters != NULL)
		a->waiters->prev = wt;
	a->waiters = wt;
	evhttp_connection_set_closecb(
	    evhttp_request_get_connection(req), waiter_gone, wt);
}

static void
admin_dispatch(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const char *path =
	    evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD, status;

	request_set_id(req);
	if (path == NULL)
		path = "";
	if (strcmp(path, "/admin/drain") == 0 && cmd == EVHTTP_REQ_POST) {
		drain(a, req);
	} else if (strcmp(path, "/healthz") == 0 && get) {
		status = health_render(
		    a->srv, evhttp_request_get_output_buffer(req));
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", "application/json");
		request_send(req, status);
	} else if (strcmp(path, "/livez") == 0 && get) {
		reply_json(req, 200, json_pack("{s:s}", "status", "alive"));
	} else if (strcmp(path, "/metrics") == 0 && get) {
		metrics_render(a->srv, evhttp_request_get_output_buffer(req));
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", "text/plain; version=0.0.4");
		request_send(req, 200);
	} else if (strcmp(path, "/admin/drain") == 0) {
		evhttp_add_header(
		    evhttp_request_get_output_headers(req), "Allow", "POST");
		reply_error(req, 405, "method not allowed");
	} else {
		reply_error(req, 404, "not found");
	}
}

struct admin *
admin_new(struct graced_server *srv, int fd)
{
	struct admin *a = calloc(1, sizeof(*a));
	struct evconnlistener *lev;

	if (a == NULL)
		return NULL;
	a->srv = srv;
	a->http = evhttp_new(srv->base);
	lev = a->http ? evconnlistener_new(srv->base, NULL, NULL,
	                    LEV_OPT_CLOSE_ON_FREE, -1, fd) :
	                NULL;
	if (lev == NULL)
		close(fd);
	if (lev == NULL || evhttp_bind_listener(a->http, lev) == NULL) {
		if (lev != NULL)
			evconnlistener_free(lev);
		admin_free(a);
		return NULL;
	}
	evhttp_set_gencb(a->http, admin_dispatch, a);
	evhttp_set_timeout(a->http, 30);
	evhttp_set_max_body_size(a->http, 4096);
	return a;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->http != NULL)
		evhttp_free(a->http);
	free(a);
}
