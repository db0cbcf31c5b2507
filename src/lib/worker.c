/* A worker: one event loop on a thread of its own, with its evhttp, its
 * SO_REUSEPORT listener and its share of the drain. Every call on its
 * connections is made from its own loop; the main loop only sends commands
 * (worker_send) and reads the counters. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/http.h>

#include "listener.h"
#include "log.h"
#include "request.h"
#include "server.h"
#include "util.h"
#include "worker.h"

static void
worker_dispatch(struct evhttp_request *req, void *arg)
{
	struct worker *w = arg;
	struct graced_request *r = conn_find(w, req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct router_match m;
	enum framing_verdict v;

	if (r == NULL) {
		/* Every connection is adopted before its first read. */
		log_event("untracked_request", NULL);
		evhttp_send_reply(req, 500, NULL, NULL);
		return;
	}
	conn_request_begin(r, req);
	r->route = w->srv->router.nroutes;
	if (server_state(w->srv) >= GRACED_DRAINING)
		request_set_close(req);
	if (r->overloaded) {
		request_set_close(req);
		graced_reply_error(r, 503, "too many connections");
		return;
	}
	/* Framing a front proxy may read differently (framing.c): the
	 * connection closes after the reply, so whatever was smuggled behind
	 * this request never runs. */
	v = conn_verdict(r);
	if (v != FRAMING_OK) {
		request_set_close(req);
		graced_reply_error(r, framing_status(v), framing_message(v));
		return;
	}
	if (path == NULL || path[0] == '\0')
		path = "/";
	router_find(&w->srv->router,
	    request_method_name(evhttp_request_get_command(req)), path,
	    strlen(path), &m);
	r->route = m.id;
	if (m.route == NULL) {
		if (m.status == 405)
			evhttp_add_header(
			    evhttp_request_get_output_headers(req), "Allow",
			    m.allow);
		graced_reply_error(r, m.status,
		    m.status == 405 ? "method not allowed" : "not found");
		return;
	}
	m.route->fn(r, m.arg);
}

static void
close_listener(struct worker *w)
{
	listener_guard_detach(w->guard);
	if (w->bound != NULL)
		evhttp_del_accept_socket(w->http, w->bound);
	w->bound = NULL;
	w->listener = NULL;
	w->lfd = -1;
	w->closing = 0;
}

/* Tells the main loop that something it waits for may have happened. */
static void
report(struct worker *w)
{
	server_wake(w->srv);
}

static void
close_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	if (w->lfd < 0)
		return;
	/* While connections wait, the listener's accept callback runs and
	 * (through conn_bevcb) brings us back here. */
	if (listener_queue_len(w->lfd) > 0)
		return;
	if (!SHARED_GET(&w->queue_empty)) {
		SHARED_SET(&w->queue_empty, 1);
		report(w);
	}
	if (!w->close_wanted)
		return;
	close_listener(w);
	log_event("listener_closed",
	    json_pack("{s:I,s:I,s:I}", "worker", (json_int_t)w->id,
	        "connections", (json_int_t)w->nconns, "in_flight",
	        (json_int_t)w->in_flight));
	SHARED_SET(&w->listener_closed, 1);
	report(w);
}

static void
stop_accepting(struct worker *w)
{
	int rc;

	if (w->lfd < 0)
		return;
	rc = listener_filter_syns(w->lfd);
	if (rc < 0) {
		int rc2 = listener_shrink_backlog(w->lfd);
		log_event("syn_filter_unavailable",
		    json_pack("{s:I,s:s,s:s}", "worker", (json_int_t)w->id,
		        "error", strerror(-rc), "instead",
		        rc2 < 0 ? "nothing" : "backlog 0"));
	}
	w->closing = 1;
	event_active(w->close_check_ev, EV_TIMEOUT, 0);
}

static void
close_idle(struct worker *w, int fresh)
{
	for (size_t i = 0; i < w->conns_cap; i++) {
		struct graced_request *r = w->conns[i];
		if (r != NULL &&
		    (conn_is_idle(r) || (fresh && conn_is_fresh(r))))
			evhttp_connection_free(r->evcon);
	}
}

static void
cut_off(struct worker *w)
{
	unsigned cut = 0;

	close_listener(w);
	SHARED_SET(&w->listener_closed, 1);
	for (size_t i = 0; i < w->conns_cap; i++) {
		struct graced_request *r = w->conns[i];
		if (r == NULL)
			continue;
		if (r->req != NULL || r->rx_pending)
			cut++;
		evhttp_connection_free(r->evcon);
	}
	COUNTER_ADD(&w->metrics.cut_off, cut);
	SHARED_SET(&w->cut_done, 1);
	report(w);
}

/* Replies not sent yet will close the connection. A reply already sent
 * promised keep-alive in its headers: closing after it would turn the next
 * request into an EOF, so that connection gets "close" on its next request
 * instead. */
static void
mark_close(struct worker *w)
{
	for (size_t i = 0; i < w->conns_cap; i++) {
		struct graced_request *r = w->conns[i];
		if (r != NULL && r->req != NULL && !r->replied)
			request_set_close(r->req);
	}
}

static void
cmd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	unsigned cmds = __atomic_exchange_n(&w->cmds, 0, __ATOMIC_ACQ_REL);

	(void)fd;
	(void)what;
	if (cmds & WORKER_DRAIN)
		mark_close(w);
	if (cmds & WORKER_STOP_ACCEPT)
		stop_accepting(w);
	if (cmds & WORKER_CLOSE_LISTENER) {
		w->close_wanted = 1;
		event_active(w->close_check_ev, EV_TIMEOUT, 0);
	}
	if (cmds & (WORKER_CLOSE_IDLE | WORKER_CLOSE_FRESH))
		close_idle(w, (cmds & WORKER_CLOSE_FRESH) != 0);
	if (cmds & WORKER_CUT_OFF)
		cut_off(w);
	if (cmds & (WORKER_CLOSE_IDLE | WORKER_CLOSE_FRESH))
		report(w);
}

void
worker_send(struct worker *w, unsigned cmds)
{
	__atomic_or_fetch(&w->cmds, cmds, __ATOMIC_ACQ_REL);
	event_active(w->cmd_ev, EV_TIMEOUT, 0);
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t limit = (uint64_t)(w->srv->cfg.request_timeout * 1000);
	uint64_t now = now_ms();

	(void)fd;
	(void)what;
	for (size_t i = 0; i < w->conns_cap; i++) {
		struct graced_request *r = w->conns[i];
		if (r == NULL || r->req != NULL || !r->rx_pending ||
		    now - r->rx_since_ms < limit)
			continue;
		log_event("request_timeout",
		    json_pack(
		        "{s:I}", "ms", (json_int_t)(now - r->rx_since_ms)));
		evhttp_connection_free(r->evcon);
	}
}

struct worker *
worker_new(struct graced_server *srv, unsigned id)
{
	struct worker *w = calloc(1, sizeof(*w));
	struct timeval idle = seconds_tv(srv->cfg.idle_timeout);
	double sweep = srv->cfg.request_timeout / 2;
	struct timeval every = seconds_tv(sweep < 1 ? sweep : 1);

	if (w == NULL)
		return NULL;
	w->srv = srv;
	w->id = id;
	w->lfd = -1;
	/* A lone worker shares the main loop: no thread, no locks. */
	w->own_base = srv->nworkers > 1;
	w->base = w->own_base ? server_base_new() : srv->base;
	if (w->base == NULL) {
		free(w);
		return NULL;
	}
	w->http = evhttp_new(w->base);
	w->adopt_ev = event_new(w->base, -1, 0, conn_adopt_cb, w);
	w->cmd_ev = event_new(w->base, -1, 0, cmd_cb, w);
	w->close_check_ev = event_new(w->base, -1, 0, close_check_cb, w);
	w->sweep_ev = event_new(w->base, -1, EV_PERSIST, sweep_cb, w);
	w->guard = listener_guard_new(w->base, "public");
	if (w->http == NULL || w->adopt_ev == NULL || w->cmd_ev == NULL ||
	    w->close_check_ev == NULL || w->sweep_ev == NULL ||
	    w->guard == NULL ||
	    metrics_init(&w->metrics, srv->router.nroutes + 1) < 0) {
		worker_free(w);
		return NULL;
	}
	event_priority_set(w->adopt_ev, 0);
	event_priority_set(w->cmd_ev, 0);
	evhttp_set_bevcb(w->http, conn_bevcb, w);
	evhttp_set_gencb(w->http, worker_dispatch, w);
	evhttp_set_timeout_tv(w->http, &idle);
	evhttp_set_max_body_size(w->http, (ev_ssize_t)srv->cfg.max_body);
	evhttp_set_max_headers_size(
	    w->http, (ev_ssize_t)srv->cfg.max_header_size);
	evhttp_set_allowed_methods(w->http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
	        EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_default_content_type(w->http, "application/json");
	event_add(w->sweep_ev, &every);
	return w;
}

int
worker_listen(struct worker *w, evutil_socket_t fd)
{
	w->listener = evconnlistener_new(
	    w->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (w->listener == NULL) {
		close(fd);
		return -ENOMEM;
	}
	w->bound = evhttp_bind_listener(w->http, w->listener);
	if (w->bound == NULL) {
		evconnlistener_free(w->listener);
		w->listener = NULL;
		return -ENOMEM;
	}
	listener_guard_attach(w->guard, w->listener);
	w->lfd = fd;
	return 0;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int
worker_start(struct worker *w)
{
	sigset_t all, old;
	int rc;

	if (!w->own_base)
		return 0;
	/* Signals belong to the main loop: the thread starts with them
	 * blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return -rc;
	w->running = 1;
	return 0;
}

void
worker_join(struct worker *w)
{
	if (w == NULL || !w->running)
		return;
	event_base_loopexit(w->base, NULL);
	pthread_join(w->thread, NULL);
	w->running = 0;
}

void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	worker_join(w);
	/* Before evhttp_free frees the listener it watches. */
	listener_guard_free(w->guard);
	/* evhttp_free runs every close callback, which empties conns. */
	if (w->http != NULL)
		evhttp_free(w->http);
	conn_adopt_cb(-1, 0, w);
	if (w->adopt_ev)
		event_free(w->adopt_ev);
	if (w->cmd_ev)
		event_free(w->cmd_ev);
	if (w->close_check_ev)
		event_free(w->close_check_ev);
	if (w->sweep_ev)
		event_free(w->sweep_ev);
	metrics_free(&w->metrics);
	free(w->conns);
	if (w->own_base && w->base)
		event_base_free(w->base);
	free(w);
}
