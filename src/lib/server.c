/* The server: config, the main loop and its timers, and start-up. Requests
 * are served by the worker; the drain's transitions live in drain.c. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "worker.h"

static void
delay_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_stop(arg, "drain delay over");
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_cut_off(arg, "shutdown timeout");
}

static void
grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct graced_server *srv = arg;

	(void)fd;
	(void)what;
	worker_close_idle(srv->worker, 1);
	drain_check(srv);
}

struct graced_server *
graced_server_new(const struct graced_config *cfg)
{
	struct graced_server *srv = calloc(1, sizeof(*srv));
	struct event_config *ec = event_config_new();
	int rc;

	if (srv == NULL || ec == NULL)
		goto fail;
	srv->cfg = *cfg;
	rc = log_setup(cfg);
	if (rc < 0) {
		log_event("start_failed",
		    json_pack("{s:s,s:s}", "cause", "cannot open log file",
		        "error", strerror(-rc)));
		goto fail;
	}
	/* Coalesces evhttp's epoll_ctl calls; ignored by other backends. */
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	srv->base = event_base_new_with_config(ec);
	if (srv->base == NULL || event_base_priority_init(srv->base, 2) < 0)
		goto fail;
	srv->delay_ev = evtimer_new(srv->base, delay_cb, srv);
	srv->timeout_ev = evtimer_new(srv->base, timeout_cb, srv);
	srv->grace_ev = evtimer_new(srv->base, grace_cb, srv);
	if (srv->delay_ev == NULL || srv->timeout_ev == NULL ||
	    srv->grace_ev == NULL)
		goto fail;
	/* A client that goes away must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	event_config_free(ec);
	return srv;
fail:
	if (ec != NULL)
		event_config_free(ec);
	graced_server_free(srv);
	return NULL;
}

int
graced_server_add_routes(struct graced_server *srv,
    const struct graced_route *routes, size_t n, void *arg)
{
	if (srv->state != GRACED_STARTING)
		return -EBUSY;
	return router_add(&srv->router, routes, n, arg);
}

static int
hook_add(struct server_hook *hooks, unsigned *n, void *fn, void *arg)
{
	if (*n == SERVER_MAX_HOOKS)
		return -ENOSPC;
	hooks[*n].fn = fn;
	hooks[*n].arg = arg;
	(*n)++;
	return 0;
}

int
graced_server_on_drain(
    struct graced_server *srv, graced_drain_fn *fn, void *arg)
{
	return hook_add(srv->on_drain, &srv->ndrain_hooks, (void *)fn, arg);
}

int
graced_server_on_stop(struct graced_server *srv, graced_stop_fn *fn, void *arg)
{
	return hook_add(srv->on_stop, &srv->nstop_hooks, (void *)fn, arg);
}

static int
start_failed(const char *err, int rc)
{
	log_event("start_failed", json_pack("{s:s}", "cause", err));
	return rc;
}

int
graced_server_start(struct graced_server *srv)
{
	char err[512];
	int pfd = -1, afd = -1, rc;

	if (srv->state != GRACED_STARTING)
		return -EBUSY;
	rc = router_add(&srv->router, health_routes, health_nroutes, NULL);
	if (rc < 0)
		return start_failed("too many route tables", rc);
	srv->worker = worker_new(srv, srv->base);
	if (srv->worker == NULL)
		return start_failed("out of memory", -ENOMEM);
	pfd = listener_open(&srv->cfg.listen, 0, err, sizeof(err));
	if (pfd < 0)
		return start_failed(err, pfd);
	afd = listener_open(&srv->cfg.admin_listen, 0, err, sizeof(err));
	if (afd < 0) {
		close(pfd);
		return start_failed(err, afd);
	}
	listener_address(pfd, srv->address[0], sizeof(srv->address[0]));
	listener_address(afd, srv->address[1], sizeof(srv->address[1]));
	rc = worker_listen(srv->worker, pfd);
	if (rc < 0) {
		close(pfd);
		close(afd);
		return start_failed("cannot serve the listener", rc);
	}
	srv->admin = admin_new(srv, afd);
	if (srv->admin == NULL)
		return start_failed("cannot serve the admin listener", -ENOMEM);
	drain_serving(srv);
	return 0;
}

int
graced_server_run(struct graced_server *srv)
{
	if (srv->state == GRACED_STARTING)
		return -EINVAL;
	event_base_dispatch(srv->base);
	return srv->exit_status;
}

void
graced_server_drain(struct graced_server *srv, const char *cause)
{
	srv->drain_requests++;
	if (srv->state == GRACED_SERVING)
		drain_begin(srv, cause);
	else if (srv->state == GRACED_DRAINING && srv->drain_requests > 1)
		drain_stop(srv, cause);
}

void
graced_server_stop_now(struct graced_server *srv, const char *cause)
{
	drain_cut_off(srv, cause);
}

void
graced_server_reopen_log(struct graced_server *srv)
{
	int rc = log_reopen();

	(void)srv;
	log_event("log_reopened",
	    rc < 0 ? json_pack("{s:s}", "error", strerror(-rc)) : NULL);
}

enum graced_state
graced_server_state(const struct graced_server *srv)
{
	return srv->state;
}

struct event_base *
graced_server_base(struct graced_server *srv)
{
	return srv->base;
}

const char *
graced_server_address(const struct graced_server *srv, int admin)
{
	if (srv->state == GRACED_STARTING)
		return NULL;
	return srv->address[admin ? 1 : 0];
}

void
graced_server_free(struct graced_server *srv)
{
	if (srv == NULL)
		return;
	worker_free(srv->worker);
	admin_free(srv->admin);
	if (srv->delay_ev)
		event_free(srv->delay_ev);
	if (srv->timeout_ev)
		event_free(srv->timeout_ev);
	if (srv->grace_ev)
		event_free(srv->grace_ev);
	if (srv->base)
		event_base_free(srv->base);
	log_close();
	free(srv);
}
