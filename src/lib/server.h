/* struct graced_server: the public facade, and the only file that sees
 * inside it is server.c. Tests may read it too. */
#ifndef GRACED_SERVER_H
#define GRACED_SERVER_H

#include <event2/event.h>

#include "graced.h"
#include "activation.h"
#include "config.h"
#include "router.h"
#include "worker.h"

struct admin;
struct drain;
struct health;

/* Owned by the main loop. Worker threads read cfg, router and what env
 * points to, all fixed before the first thread starts; the drain and the
 * health pages say what they share. */
struct graced_server {
	struct graced_config cfg;
	struct event_base *base; /* main loop: signals, timers, admin */
	struct worker **workers; /* the loops that serve requests */
	unsigned nworkers;
	struct worker_env env; /* what every worker is given */
	struct drain *drain;   /* the state machine */
	struct health *health; /* /healthz and /metrics */
	struct admin *admin;
	struct router router;
	char address[2][300];  /* bound public and admin addresses */
	char *admin_token;     /* --admin-token-file's, read once; NULL: none */
	struct activation act; /* listeners passed to us, kept until free */
	graced_upgrade_fn *upgrade; /* POST /admin/upgrade's hook, or NULL */
	void *upgrade_arg;
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

#endif
