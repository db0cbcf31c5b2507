/* struct graced_server: everything the main loop owns. */
#ifndef GRACED_SERVER_H
#define GRACED_SERVER_H

#include <stdint.h>
#include <event2/event.h>
#include <event2/http.h>

#include "graced.h"
#include "config.h"
#include "router.h"

#define SERVER_MAX_HOOKS 8

struct worker;
struct admin;

struct server_hook {
	void *fn; /* graced_drain_fn, _stop_fn, _status_fn or _metrics_fn */
	void *arg;
	const char *name; /* status hooks: the /healthz field */
};

/* Owned by the main loop. Worker threads read cfg, router, workers,
 * nworkers and admin, all fixed before the first thread starts, and the
 * fields marked shared below; nothing else. */
struct graced_server {
	struct graced_config cfg;
	struct event_base *base; /* main loop: signals, timers, admin */
	struct worker **workers; /* the loops that serve requests */
	unsigned nworkers;
	struct admin *admin;
	struct router router;
	/* Written by the main loop (SHARED_SET), read anywhere (server_state). */
	enum graced_state state;
	struct server_hook on_drain[SERVER_MAX_HOOKS];
	struct server_hook on_stop[SERVER_MAX_HOOKS];
	unsigned ndrain_hooks, nstop_hooks;
	/* Set before start, then only read (from any thread). */
	struct server_hook status[SERVER_MAX_HOOKS];
	struct server_hook metrics[SERVER_MAX_HOOKS];
	unsigned nstatus, nmetrics;
	struct event *delay_ev;   /* drain delay over: DRAINING->STOPPING */
	struct event *timeout_ev; /* shutdown timeout: cut off */
	struct event *grace_ev;   /* first-byte grace over */
	struct event *check_ev;   /* a worker reported progress */
	unsigned drain_requests;  /* drain signals received */
	int close_sent;           /* workers told to close their listeners */
	int cutting;              /* workers told to cut off */
	const char *cut_why;      /* ... and why */
	/* Written by the main loop (SHARED_SET), read by /metrics and /healthz
	 * on any thread (SHARED_GET). */
	uint64_t started_ms;  /* SERVING since */
	uint64_t drain_ms;    /* DRAINING since */
	uint64_t stopping_ms; /* STOPPING since */
	uint64_t stopped_ms;  /* STOPPED since (main loop only) */
	uint64_t cut_off;     /* requests cut off at stop */
	int exit_status;
	char address[2][300]; /* bound public and admin addresses */
	char *admin_token;    /* --admin-token-file's, read once; NULL: none */
};

/* Tests only: graced_server_start fails (-ECANCELED) right after this step,
 * to check that it undoes everything. 0, the library's value: never. */
enum {
	SERVER_STEP_ADMIN_BIND = 1, /* admin socket bound */
	SERVER_STEP_LISTEN,         /* workers took their listeners */
	SERVER_STEP_ADMIN,          /* admin listener served */
	SERVER_STEP_THREADS,        /* worker threads started */
};
extern int server_fail_step;

/* The state, from any thread. */
static inline enum graced_state
server_state(const struct graced_server *srv)
{
	return __atomic_load_n(&srv->state, __ATOMIC_ACQUIRE);
}

/* Makes an event loop with the library's settings (epoll changelist, two
 * priorities). */
struct event_base *server_base_new(void);
/* Wakes the main loop to look at the workers' progress (any thread). */
void server_wake(struct graced_server *srv);
/* Totals over the workers (any thread). */
unsigned server_connections(const struct graced_server *srv);
unsigned server_in_flight(const struct graced_server *srv);

/* Called by workers and the admin listener as their part of the drain
 * progresses; see drain.c. */
void drain_serving(struct graced_server *srv);
void drain_begin(struct graced_server *srv, const char *cause);
void drain_stop(struct graced_server *srv, const char *why);
void drain_check(struct graced_server *srv);
/* Whether every worker has closed its listener (what drain --wait waits
 * for). */
int drain_listeners_closed(struct graced_server *srv);
void drain_cut_off(struct graced_server *srv, const char *why);
/* Milliseconds left before the listeners close (0 outside DRAINING). */
uint64_t drain_ms_left(const struct graced_server *srv);

#endif
