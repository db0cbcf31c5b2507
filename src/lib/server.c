/* The server: config, the main loop and its timers, and start-up. Requests
 * are served by the worker; the drain's transitions live in drain.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "admin.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "util.h"
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
	for (unsigned i = 0; i < srv->nworkers; i++)
		worker_send(srv->workers[i], WORKER_CLOSE_FRESH);
}

static void
check_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_check(arg);
}

void
server_wake(struct graced_server *srv)
{
	event_active(srv->check_ev, EV_TIMEOUT, 0);
}

unsigned
server_connections(const struct graced_server *srv)
{
	unsigned n = 0;

	for (unsigned i = 0; i < srv->nworkers; i++)
		n += COUNTER_GET(&srv->workers[i]->nconns);
	return n;
}

unsigned
server_in_flight(const struct graced_server *srv)
{
	unsigned n = 0;

	for (unsigned i = 0; i < srv->nworkers; i++)
		n += COUNTER_GET(&srv->workers[i]->in_flight);
	return n;
}

struct event_base *
server_base_new(void)
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

/* The token is read before anything is bound, so a bad file fails the
 * start with nothing half-started. */
static int
token_load(struct graced_server *srv)
{
	char err[PATH_MAX + 128];
	int rc;

	if (srv->cfg.admin_token_file[0] == '\0')
		return 0;
	rc = admin_token_read(
	    srv->cfg.admin_token_file, &srv->admin_token, err, sizeof(err));
	if (rc < 0)
		log_event("start_failed",
		    json_pack("{s:s,s:s}", "cause",
		        "cannot use --admin-token-file", "error", err));
	return rc;
}

struct graced_server *
graced_server_new(const struct graced_config *cfg)
{
	struct graced_server *srv = calloc(1, sizeof(*srv));
	long cpus;
	int rc;

	if (srv == NULL)
		return NULL;
	srv->cfg = *cfg;
	rc = log_setup(cfg);
	if (rc < 0) {
		log_event("start_failed",
		    json_pack("{s:s,s:s}", "cause", "cannot open log file",
		        "error", strerror(-rc)));
		goto fail;
	}
	if (token_load(srv) < 0)
		goto fail;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	srv->nworkers = cfg->workers ? cfg->workers :
	    cpus > 0                 ? (unsigned)cpus :
	                               1;
	/* Several workers are woken from the main thread: libevent needs its
	 * locks before any loop is made. One worker runs on the main loop
	 * itself and needs none. */
	if (srv->nworkers > 1 && evthread_use_pthreads() < 0)
		goto fail;
	srv->base = server_base_new();
	if (srv->base == NULL)
		goto fail;
	srv->delay_ev = evtimer_new(srv->base, delay_cb, srv);
	srv->timeout_ev = evtimer_new(srv->base, timeout_cb, srv);
	srv->grace_ev = evtimer_new(srv->base, grace_cb, srv);
	srv->check_ev = event_new(srv->base, -1, 0, check_cb, srv);
	if (srv->delay_ev == NULL || srv->timeout_ev == NULL ||
	    srv->grace_ev == NULL || srv->check_ev == NULL)
		goto fail;
	/* A client that goes away must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	return srv;
fail:
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

int
graced_server_add_status(struct graced_server *srv, const char *name,
    graced_status_fn *fn, void *arg)
{
	int rc = srv->state != GRACED_STARTING ?
	    -EBUSY :
	    hook_add(srv->status, &srv->nstatus, (void *)fn, arg);

	if (rc == 0)
		srv->status[srv->nstatus - 1].name = name;
	return rc;
}

int
graced_server_add_metrics(
    struct graced_server *srv, graced_metrics_fn *fn, void *arg)
{
	if (srv->state != GRACED_STARTING)
		return -EBUSY;
	return hook_add(srv->metrics, &srv->nmetrics, (void *)fn, arg);
}

static int
start_failed(const char *err, int rc)
{
	log_event("start_failed", json_pack("{s:s}", "cause", err));
	return rc;
}

/* Opens one listener per worker, all on the same port (SO_REUSEPORT when
 * there are several). Returns 0 or a negative errno with err set. */
static int
open_listeners(struct graced_server *srv, int *fds, char *err, size_t len)
{
	struct config_addr addr = srv->cfg.listen;
	int reuse = srv->nworkers > 1;

	for (unsigned i = 0; i < srv->nworkers; i++) {
		fds[i] = listener_open(&addr, reuse, err, len);
		if (fds[i] < 0) {
			int rc = fds[i];
			while (i-- > 0)
				close(fds[i]);
			return rc;
		}
		if (i == 0) {
			/* Port 0: the others join the port the first got. */
			const char *colon;
			listener_address(
			    fds[0], srv->address[0], sizeof(srv->address[0]));
			colon = strrchr(srv->address[0], ':');
			snprintf(addr.port, sizeof(addr.port), "%s", colon + 1);
		}
	}
	return 0;
}

int server_fail_step;

/* The test hook: fails start right after step (see server.h). */
static int
fail_after(int step, const char **cause)
{
	if (server_fail_step != step)
		return 0;
	*cause = "server_fail_step (tests only)";
	return -ECANCELED;
}

/* Undoes a start that failed: nothing stays bound, no thread runs, and the
 * server is as graced_server_new left it. */
static void
start_undo(struct graced_server *srv)
{
	for (unsigned i = 0; srv->workers != NULL && i < srv->nworkers; i++)
		worker_free(srv->workers[i]);
	free(srv->workers);
	srv->workers = NULL;
	admin_free(srv->admin);
	srv->admin = NULL;
	/* The health routes are added again by the next start. */
	srv->router.ntables--;
	srv->router.nroutes -= health_nroutes;
}

int
graced_server_start(struct graced_server *srv)
{
	char err[512];
	const char *cause = "out of memory";
	int *fds = NULL, afd = -1, rc;
	unsigned nfds = 0; /* the last nfds of fds are ours to close */

	if (srv->state != GRACED_STARTING)
		return -EBUSY;
	rc = router_add(&srv->router, health_routes, health_nroutes, NULL);
	if (rc < 0)
		return start_failed("too many route tables", rc);
	rc = -ENOMEM;
	srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
	fds = calloc(srv->nworkers, sizeof(*fds));
	if (srv->workers == NULL || fds == NULL)
		goto out;
	for (unsigned i = 0; i < srv->nworkers; i++) {
		srv->workers[i] = worker_new(srv, i);
		if (srv->workers[i] == NULL)
			goto out;
	}
	cause = err;
	rc = open_listeners(srv, fds, err, sizeof(err));
	if (rc < 0)
		goto out;
	nfds = srv->nworkers;
	afd = listener_open(&srv->cfg.admin_listen, 0, err, sizeof(err));
	rc = afd < 0 ? afd : fail_after(SERVER_STEP_ADMIN_BIND, &cause);
	if (rc < 0)
		goto out;
	listener_address(afd, srv->address[1], sizeof(srv->address[1]));
	admin_check_exposed(srv, afd);
	cause = "cannot serve the listener";
	for (unsigned i = 0; i < srv->nworkers && rc == 0; i++) {
		/* worker_listen takes the fd over, even when it fails. */
		rc = worker_listen(srv->workers[i], fds[i]);
		nfds--;
	}
	if (rc == 0)
		rc = fail_after(SERVER_STEP_LISTEN, &cause);
	if (rc < 0)
		goto out;
	cause = "cannot serve the admin listener";
	srv->admin = admin_new(srv, afd);
	afd = -1; /* taken over */
	rc = srv->admin == NULL ? -ENOMEM :
	                          fail_after(SERVER_STEP_ADMIN, &cause);
	if (rc < 0)
		goto out;
	cause = "cannot start a worker thread";
	for (unsigned i = 0; i < srv->nworkers && rc == 0; i++)
		rc = worker_start(srv->workers[i]);
	if (rc == 0)
		rc = fail_after(SERVER_STEP_THREADS, &cause);
	if (rc < 0)
		goto out;
	drain_serving(srv);
out:
	for (unsigned i = srv->nworkers - nfds; i < srv->nworkers; i++)
		close(fds[i]);
	free(fds);
	if (afd >= 0)
		close(afd);
	if (rc < 0) {
		start_undo(srv);
		return start_failed(cause, rc);
	}
	return 0;
}

int
graced_server_run(struct graced_server *srv)
{
	if (server_state(srv) == GRACED_STARTING)
		return -EINVAL;
	event_base_dispatch(srv->base);
	for (unsigned i = 0; i < srv->nworkers; i++)
		worker_join(srv->workers[i]);
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
	return server_state(srv);
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
	for (unsigned i = 0; srv->workers != NULL && i < srv->nworkers; i++)
		worker_free(srv->workers[i]);
	free(srv->workers);
	admin_free(srv->admin);
	if (srv->delay_ev)
		event_free(srv->delay_ev);
	if (srv->timeout_ev)
		event_free(srv->timeout_ev);
	if (srv->grace_ev)
		event_free(srv->grace_ev);
	if (srv->check_ev)
		event_free(srv->check_ev);
	if (srv->base)
		event_base_free(srv->base);
	log_close();
	free(srv->admin_token);
	free(srv);
}
