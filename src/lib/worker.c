/* A worker: one event loop on a thread of its own, with its evhttp, its
 * SO_REUSEPORT listener, its connection registry (conn.c) and its share of
 * the drain. Every call on its connections is made from its own loop; the
 * main loop only sends commands (worker_send) and reads what the accessors
 * show. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/http.h>
#include <event2/listener.h>

#include "conn.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "util.h"
#include "worker.h"

/* A worker's fields belong to its own loop, except where a comment names
 * another thread and how it reads or writes. */
struct worker {
	const struct worker_env *env;
	unsigned id;
	struct event_base *base; /* its loop (the main one if own_base is 0) */
	int own_base;            /* 0: runs on the main loop */
	pthread_t thread;        /* main thread only, like running */
	int running;             /* thread started, not joined */
	struct evhttp *http;
	struct evconnlistener *listener;
	struct evhttp_bound_socket *bound;
	evutil_socket_t lfd;          /* -1 once closed */
	struct conn_set *conns;       /* its connections */
	struct conn_env conn_env;     /* what conns was given */
	struct event *cmd_ev;         /* the main loop sent commands */
	struct event *close_check_ev; /* listener closing: queue empty yet? */
	struct event *sweep_ev;       /* request-timeout sweep */
	/* Accept failures: pause, count. Its counters are read by /metrics on
	 * any thread (listener_guard_errors). */
	struct listener_guard *guard;
	/* The listener was adopted: another process may hold it. Set by
	 * worker_share before the loop runs, or by WORKER_HAND_OVER on the
	 * worker's loop; read there only. */
	int shared;
	int closing;      /* listener is draining its queue */
	int close_wanted; /* close the listener once empty */
	/* Pending commands: any thread ORs bits in (worker_send), the worker
	 * takes them all with an atomic exchange. */
	unsigned cmds;
	/* Every command ever sent: ORed in by worker_send before the wake-up,
	 * read by the worker (SHARED_GET), so a request dispatched after a
	 * drain began carries "close" even before cmd_cb has run. */
	unsigned sent;
	/* WORKER_QUEUE_EMPTY...: ORed in by the worker (release), read by the
	 * main loop (worker_done, acquire). */
	unsigned done;
};

/* Commands after which every reply closes its connection, and after which
 * the last connection to close is news for the main loop. */
#define WORKER_DRAINING (WORKER_DRAIN | WORKER_STOP_ACCEPT | WORKER_CUT_OFF)
#define WORKER_STOPPING (WORKER_STOP_ACCEPT | WORKER_CUT_OFF)

static void
worker_dispatch(struct evhttp_request *req, void *arg)
{
	struct worker *w = arg;
	struct graced_request *r = conn_find(w->conns, req);
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
	if (SHARED_GET(&w->sent) & WORKER_DRAINING)
		http_set_close(req);
	if (conn_overloaded(r)) {
		http_set_close(req);
		graced_reply_error(r, 503, "too many connections");
		return;
	}
	/* Framing a front proxy may read differently (framing.c): the
	 * connection closes after the reply, so whatever was smuggled behind
	 * this request never runs. */
	v = conn_verdict(r);
	if (v != FRAMING_OK) {
		http_set_close(req);
		graced_reply_error(r, framing_status(v), framing_message(v));
		return;
	}
	if (path == NULL || path[0] == '\0')
		path = "/";
	router_find(w->env->router,
	    http_method_name(evhttp_request_get_command(req)), path,
	    strlen(path), &m);
	conn_route(r, m.id);
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
report(struct worker *w, unsigned done)
{
	__atomic_or_fetch(&w->done, done, __ATOMIC_RELEASE);
	w->env->wake(w->env->arg);
}

int
worker_done(const struct worker *w, unsigned what)
{
	return (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) & what) == what;
}

unsigned
worker_connections(const struct worker *w)
{
	return conn_count(w->conns);
}

unsigned
worker_in_flight(const struct worker *w)
{
	return conn_in_flight(w->conns);
}

const struct metrics *
worker_metrics(const struct worker *w)
{
	return conn_metrics(w->conns);
}

const struct listener_guard *
worker_guard(const struct worker *w)
{
	return w->guard;
}

/* The registry's news (conn.h), on this worker's loop. */
static int
worker_news(void *arg, enum conn_news news)
{
	struct worker *w = arg;

	switch (news) {
	case CONN_ACCEPTED:
		/* While connections wait, the listener's accept callback runs
		 * and brings us back to the closing listener's check. */
		if (w->closing)
			event_active(w->close_check_ev, EV_TIMEOUT, 0);
		break;
	case CONN_ADOPTED:
		return w->env->connections(w->env->arg) >
		    w->env->cfg->max_connections;
	case CONN_GONE:
		if (conn_count(w->conns) == 0 &&
		    (SHARED_GET(&w->sent) & WORKER_STOPPING))
			report(w, 0);
		break;
	}
	return 0;
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
	 * (through worker_news) brings us back here. */
	if (!w->shared && listener_queue_len(w->lfd) > 0)
		return;
	if (!worker_done(w, WORKER_QUEUE_EMPTY))
		report(w, WORKER_QUEUE_EMPTY);
	if (!w->close_wanted)
		return;
	close_listener(w);
	log_event("listener_closed",
	    json_pack("{s:I,s:I,s:I}", "worker", (json_int_t)w->id,
	        "connections", (json_int_t)conn_count(w->conns), "in_flight",
	        (json_int_t)conn_in_flight(w->conns)));
	report(w, WORKER_LISTENER_CLOSED);
}

static void
stop_accepting(struct worker *w)
{
	int rc;

	if (w->lfd < 0)
		return;
	if (w->shared) {
		/* The socket and its queue outlive us (systemd, or the next
		 * process, holds a copy): a filter, a backlog of 0 or a
		 * shutdown would reach every holder. Closing our copy resets
		 * nothing, so the listener closes now and what waits is the
		 * next process's. */
		w->close_wanted = 1;
		event_active(w->close_check_ev, EV_TIMEOUT, 0);
		return;
	}
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
cut_off(struct worker *w)
{
	close_listener(w);
	conn_cut_off(w->conns);
	report(w, WORKER_LISTENER_CLOSED | WORKER_CUT_DONE);
}

static void
cmd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	unsigned cmds = __atomic_exchange_n(&w->cmds, 0, __ATOMIC_ACQ_REL);

	(void)fd;
	(void)what;
	if (cmds & WORKER_DRAIN)
		conn_mark_close(w->conns);
	if (cmds & WORKER_HAND_OVER)
		w->shared = 1;
	if (cmds & WORKER_STOP_ACCEPT)
		stop_accepting(w);
	if (cmds & WORKER_CLOSE_LISTENER) {
		w->close_wanted = 1;
		event_active(w->close_check_ev, EV_TIMEOUT, 0);
	}
	if (cmds & (WORKER_CLOSE_IDLE | WORKER_CLOSE_FRESH))
		conn_close_idle(w->conns, (cmds & WORKER_CLOSE_FRESH) != 0);
	if (cmds & WORKER_CUT_OFF)
		cut_off(w);
	if (cmds & (WORKER_CLOSE_IDLE | WORKER_CLOSE_FRESH))
		report(w, 0);
}

void
worker_send(struct worker *w, unsigned cmds)
{
	__atomic_or_fetch(&w->sent, cmds, __ATOMIC_RELEASE);
	__atomic_or_fetch(&w->cmds, cmds, __ATOMIC_ACQ_REL);
	event_active(w->cmd_ev, EV_TIMEOUT, 0);
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	conn_sweep(w->conns, (uint64_t)(w->env->cfg->request_timeout * 1000));
}

struct event_base *
worker_base_new(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base = NULL;

	if (ec == NULL)
		return NULL;
	/* Coalesces evhttp's epoll_ctl calls; ignored by other backends. */
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	/* Priority 0 runs before evhttp's I/O (priority 1). */
	if (base != NULL && event_base_priority_init(base, 2) < 0) {
		event_base_free(base);
		base = NULL;
	}
	return base;
}

struct worker *
worker_new(const struct worker_env *env, unsigned id)
{
	struct worker *w = calloc(1, sizeof(*w));
	const struct graced_config *cfg = env->cfg;
	struct timeval idle = seconds_tv(cfg->idle_timeout);
	double sweep = cfg->request_timeout / 2;
	struct timeval every = seconds_tv(sweep < 1 ? sweep : 1);

	if (w == NULL)
		return NULL;
	w->env = env;
	w->id = id;
	w->lfd = -1;
	/* A lone worker shares the main loop: no thread, no locks. */
	w->own_base = env->threaded;
	w->base = w->own_base ? worker_base_new() : env->main_base;
	if (w->base == NULL) {
		free(w);
		return NULL;
	}
	w->conn_env = (struct conn_env){ cfg, env->router, env->srv, w->base,
		worker_news, w };
	w->conns = conn_set_new(&w->conn_env);
	w->http = evhttp_new(w->base);
	w->cmd_ev = event_new(w->base, -1, 0, cmd_cb, w);
	w->close_check_ev = event_new(w->base, -1, 0, close_check_cb, w);
	w->sweep_ev = event_new(w->base, -1, EV_PERSIST, sweep_cb, w);
	w->guard = listener_guard_new(w->base, "public");
	if (w->conns == NULL || w->http == NULL || w->cmd_ev == NULL ||
	    w->close_check_ev == NULL || w->sweep_ev == NULL ||
	    w->guard == NULL) {
		worker_free(w);
		return NULL;
	}
	event_priority_set(w->cmd_ev, 0);
	evhttp_set_bevcb(w->http, conn_bevcb, w->conns);
	evhttp_set_gencb(w->http, worker_dispatch, w);
	evhttp_set_timeout_tv(w->http, &idle);
	evhttp_set_max_body_size(w->http, (ev_ssize_t)cfg->max_body);
	evhttp_set_max_headers_size(w->http, (ev_ssize_t)cfg->max_header_size);
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
	/* Backlog 0: libevent leaves the socket's backlog alone (with -1 it
	 * would listen() again at 128, shrinking an adopted socket's for every
	 * holder); listener_open already chose one. */
	w->listener = evconnlistener_new(
	    w->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, 0, fd);
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

void
worker_share(struct worker *w)
{
	w->shared = 1;
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
	conn_set_free(w->conns);
	if (w->cmd_ev)
		event_free(w->cmd_ev);
	if (w->close_check_ev)
		event_free(w->close_check_ev);
	if (w->sweep_ev)
		event_free(w->sweep_ev);
	if (w->own_base && w->base)
		event_base_free(w->base);
	free(w);
}
