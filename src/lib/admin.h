/* The admin listener: POST /admin/drain and the health endpoints, on the
 * main loop, apart from the public connections so it never holds up a
 * drain. */
#ifndef GRACED_ADMIN_H
#define GRACED_ADMIN_H

#include <stddef.h>
#include <event2/event.h>

#include "graced.h"
#include "config.h"

struct admin;
struct drain;
struct health;
struct listener_guard;

/* What an admin listener is given; read only in admin_new. */
struct admin_env {
	const struct graced_config *cfg;
	struct event_base *base; /* the main loop */
	struct drain *drain;     /* it begins the drain and watches it */
	const struct health *health;
	const char *token; /* required bearer token, or NULL; must outlive it */
	struct graced_server *srv;  /* handed to the upgrade hook */
	graced_upgrade_fn *upgrade; /* POST /admin/upgrade, or NULL: 501 */
	void *upgrade_arg;
};

/* Serves on the listening socket fd (taken over); NULL on failure. */
struct admin *admin_new(const struct admin_env *env, int fd);
void admin_free(struct admin *a);
/* Answers the waiting POST /admin/upgrade, if any (its connection may be
 * gone); takes body. */
void admin_upgrade_reply(struct admin *a, int status, json_t *body);
/* The admin listener's accept failures, for /metrics. */
const struct listener_guard *admin_guard(const struct admin *a);

/* The longest bearer token --admin-token-file may hold. */
#define ADMIN_TOKEN_MAX 1024
/* Reads a bearer token from the file at path: its whole content but a
 * trailing newline; visible ASCII only, 1 to ADMIN_TOKEN_MAX bytes. 0 with
 * *token malloc'd (the caller frees it), or a negative errno with err set
 * to one line naming the file. */
int admin_token_read(const char *path, char **token, char *err, size_t errlen);
/* Logs admin_unprotected when the admin listener fd (bound to address) is
 * not on loopback and no token guards it. */
void admin_check_exposed(int fd, const char *token, const char *address);

#endif
