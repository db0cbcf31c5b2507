/* The server: the public facade over the drain (drain.c), the workers
 * (worker.c), the health pages (health.c) and the admin listener
 * (admin.c). It makes them, wires them together and starts them; it is the
 * only file that sees inside struct graced_server. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "admin.h"
#include "drain.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "util.h"
#include "worker.h"

/* The workers' callbacks (worker_env), any thread. */
static void
server_wake(void *arg)
{
	drain_wake(arg);
}

static unsigned
server_connections(void *arg)
{
	return drain_connections(arg);
}

/* A client that goes away must not kill the process: libevent writes with
 * writev, and a peer's reset raises SIGPIPE. Only the default disposition
 * is changed, never a handler or an ignore the application set. */
static void
server_ignore_sigpipe(void)
{
	struct sigaction sa;

	if (sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
	    sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
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

/* Listeners passed by socket activation, read before the workers are
 * counted: each passed "http" socket gets a worker of its own, since one
 * that nobody polls would keep its queue waiting forever. */
static int
activation_load(struct graced_server *srv)
{
	char err[256];
	int rc = activation_take(&srv->act, err, sizeof(err));

	if (rc < 0)
		log_event("start_failed",
		    json_pack("{s:s,s:s}", "cause",
		        "cannot adopt the passed listeners", "error", err));
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
	srv->act.admin = -1;
	rc = log_setup(cfg);
	if (rc < 0) {
		log_event("start_failed",
		    json_pack("{s:s,s:s}", "cause", "cannot open log file",
		        "error", strerror(-rc)));
		goto fail;
	}
	if (token_load(srv) < 0 || activation_load(srv) < 0)
		goto fail;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	srv->nworkers = cfg->workers ? cfg->workers :
	    cpus > 0                 ? (unsigned)cpus :
	                               1;
	if (srv->nworkers < srv->act.nhttp)
		srv->nworkers = srv->act.nhttp;
	/* Several workers are woken from the main thread: libevent needs its
	 * locks before any loop is made. One worker runs on the main loop
	 * itself and needs none. */
	if (srv->nworkers > 1 && evthread_use_pthreads() < 0)
		goto fail;
	srv->base = worker_base_new();
	if (srv->base == NULL)
		goto fail;
	srv->drain = drain_new(srv, &srv->cfg, srv->base);
	srv->health = srv->drain ? health_new(srv->drain) : NULL;
	if (srv->health == NULL)
		goto fail;
	srv->env = (struct worker_env){ &srv->cfg, &srv->router, srv, srv->base,
		srv->nworkers > 1, server_wake, server_connections,
		srv->drain };
	server_ignore_sigpipe();
	return srv;
fail:
	graced_server_free(srv);
	return NULL;
}

static int
started(const struct graced_server *srv)
{
	return drain_state(srv->drain) != GRACED_STARTING;
}

int
graced_server_add_routes(struct graced_server *srv,
    const struct graced_route *routes, size_t n, void *arg)
{
	if (started(srv))
		return -EBUSY;
	return router_add(&srv->router, routes, n, arg);
}

int
graced_server_on_drain(
    struct graced_server *srv, graced_drain_fn *fn, void *arg)
{
	return drain_on_drain(srv->drain, fn, arg);
}

int
graced_server_on_stop(struct graced_server *srv, graced_stop_fn *fn, void *arg)
{
	return drain_on_stop(srv->drain, fn, arg);
}

int
graced_server_on_closed(
    struct graced_server *srv, graced_drain_fn *fn, void *arg)
{
	return drain_on_closed(srv->drain, fn, arg);
}

int
graced_server_add_status(struct graced_server *srv, const char *name,
    graced_status_fn *fn, void *arg)
{
	if (started(srv))
		return -EBUSY;
	return health_add_status(srv->health, name, fn, arg);
}

int
graced_server_add_metrics(
    struct graced_server *srv, graced_metrics_fn *fn, void *arg)
{
	if (started(srv))
		return -EBUSY;
	return health_add_metrics(srv->health, fn, arg);
}

int
graced_server_add_count(
    struct graced_server *srv, const char *name, graced_count_fn *fn, void *arg)
{
	if (started(srv))
		return -EBUSY;
	return health_add_count(srv->health, name, fn, arg);
}

int
graced_server_on_upgrade(
    struct graced_server *srv, graced_upgrade_fn *fn, void *arg)
{
	if (started(srv))
		return -EBUSY;
	srv->upgrade = fn;
	srv->upgrade_arg = arg;
	return 0;
}

void
graced_server_upgrade_reply(struct graced_server *srv, int status, json_t *body)
{
	if (srv->admin == NULL) {
		json_decref(body);
		return;
	}
	admin_upgrade_reply(srv->admin, status, body);
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

	for (unsigned i = 0; i < srv->nworkers; i++) {
		enum listener_share share = srv->nworkers == 1 ?
		    LISTENER_ALONE :
		    i == 0 ? LISTENER_FIRST :
		             LISTENER_JOIN;
		fds[i] = listener_open(&addr, share, err, len);
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

/* The adopted public sockets, one per worker: worker i serves a copy
 * (dup) of passed socket i modulo their number, so fewer sockets than
 * workers are shared by several workers, each on its own descriptor of
 * the same socket (closing one copy never resets the queue while others
 * are open). The passed fds stay ours until graced_server_free. */
static int
adopt_listeners(struct graced_server *srv, int *fds, char *err, size_t len)
{
	const struct activation *a = &srv->act;

	for (unsigned i = 0; i < srv->nworkers; i++) {
		fds[i] = fcntl(a->http[i % a->nhttp], F_DUPFD_CLOEXEC, 0);
		if (fds[i] < 0) {
			int rc = -errno;
			snprintf(err, len, "dup: %s", strerror(errno));
			while (i-- > 0)
				close(fds[i]);
			return rc;
		}
	}
	listener_address(fds[0], srv->address[0], sizeof(srv->address[0]));
	return 0;
}

/* The admin socket: the passed one (a copy, as above) or a new one. */
static int
admin_listener(struct graced_server *srv, char *err, size_t len)
{
	int fd;

	if (srv->act.admin < 0)
		return listener_open(
		    &srv->cfg.admin_listen, LISTENER_ALONE, err, len);
	fd = fcntl(srv->act.admin, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		fd = -errno;
		snprintf(err, len, "dup: %s", strerror(errno));
	}
	return fd;
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
	drain_open(srv->drain, 0);
	drain_set_workers(srv->drain, NULL, 0);
	health_set_workers(srv->health, NULL, 0, &srv->router);
	health_set_admin_guard(srv->health, NULL);
	admin_free(srv->admin);
	srv->admin = NULL;
	for (unsigned i = 0; srv->workers != NULL && i < srv->nworkers; i++)
		worker_free(srv->workers[i]);
	free(srv->workers);
	srv->workers = NULL;
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

	if (started(srv))
		return -EBUSY;
	rc = router_add(
	    &srv->router, health_routes, health_nroutes, srv->health);
	if (rc < 0)
		return start_failed("too many route tables", rc);
	rc = -ENOMEM;
	srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
	fds = calloc(srv->nworkers, sizeof(*fds));
	if (srv->workers == NULL || fds == NULL)
		goto out;
	for (unsigned i = 0; i < srv->nworkers; i++) {
		srv->workers[i] = worker_new(&srv->env, i);
		if (srv->workers[i] == NULL)
			goto out;
	}
	drain_set_workers(srv->drain, srv->workers, srv->nworkers);
	health_set_workers(
	    srv->health, srv->workers, srv->nworkers, &srv->router);
	cause = err;
	rc = srv->act.nhttp > 0 ? adopt_listeners(srv, fds, err, sizeof(err)) :
	                          open_listeners(srv, fds, err, sizeof(err));
	if (rc < 0)
		goto out;
	nfds = srv->nworkers;
	afd = admin_listener(srv, err, sizeof(err));
	rc = afd < 0 ? afd : fail_after(SERVER_STEP_ADMIN_BIND, &cause);
	if (rc < 0)
		goto out;
	listener_address(afd, srv->address[1], sizeof(srv->address[1]));
	admin_check_exposed(afd, srv->admin_token, srv->address[1]);
	cause = "cannot serve the listener";
	for (unsigned i = 0; i < srv->nworkers && rc == 0; i++) {
		/* worker_listen takes the fd over, even when it fails. */
		rc = worker_listen(srv->workers[i], fds[i]);
		nfds--;
		if (srv->act.nhttp > 0 && !srv->act.owned)
			worker_share(srv->workers[i]);
	}
	if (rc == 0)
		rc = fail_after(SERVER_STEP_LISTEN, &cause);
	if (rc < 0)
		goto out;
	cause = "cannot serve the admin listener";
	srv->admin = admin_new(
	    &(struct admin_env){ &srv->cfg, srv->base, srv->drain, srv->health,
	        srv->admin_token, srv, srv->upgrade, srv->upgrade_arg },
	    afd);
	afd = -1; /* taken over */
	health_set_admin_guard(srv->health, admin_guard(srv->admin));
	rc = srv->admin == NULL ? -ENOMEM :
	                          fail_after(SERVER_STEP_ADMIN, &cause);
	if (rc < 0)
		goto out;
	cause = "cannot start a worker thread";
	/* The threads accept at once: a new generation's listeners are
	 * already in use, and its first answers must say "serving". */
	drain_open(srv->drain, 1);
	for (unsigned i = 0; i < srv->nworkers && rc == 0; i++)
		rc = worker_start(srv->workers[i]);
	if (rc == 0)
		rc = fail_after(SERVER_STEP_THREADS, &cause);
	if (rc < 0)
		goto out;
	/* Owned sockets (graced's supervisor): the workers' copies are the
	 * only ones this process keeps, so its drain's close is the last. */
	if (srv->act.owned)
		activation_close(&srv->act);
	drain_serving(srv->drain, srv->address[0], srv->address[1]);
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
	if (!started(srv))
		return -EINVAL;
	event_base_dispatch(srv->base);
	for (unsigned i = 0; i < srv->nworkers; i++)
		worker_join(srv->workers[i]);
	return drain_exit_status(srv->drain);
}

void
graced_server_drain(struct graced_server *srv, const char *cause)
{
	drain_signal(srv->drain, cause);
}

void
graced_server_handover(struct graced_server *srv, const char *cause)
{
	drain_handover(srv->drain, cause);
}

void
graced_server_stop_now(struct graced_server *srv, const char *cause)
{
	drain_cut_off(srv->drain, cause);
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
	return drain_state(srv->drain);
}

struct event_base *
graced_server_base(struct graced_server *srv)
{
	return srv->base;
}

const char *
graced_server_address(const struct graced_server *srv, int admin)
{
	if (!started(srv))
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
	health_free(srv->health);
	drain_free(srv->drain);
	if (srv->base)
		event_base_free(srv->base);
	activation_close(&srv->act);
	log_close();
	free(srv->admin_token);
	free(srv);
}
