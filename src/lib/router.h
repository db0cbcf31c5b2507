/* The route table: exact method + path matches over the user's tables and
 * the built-in ones. */
#ifndef GRACED_ROUTER_H
#define GRACED_ROUTER_H

#include <stddef.h>
#include "graced.h"

#define ROUTER_MAX_TABLES 8

struct router_table {
	const struct graced_route *routes;
	size_t n;
	void *arg;
};

struct router {
	struct router_table tables[ROUTER_MAX_TABLES];
	size_t ntables;
	size_t nroutes; /* over all tables; route ids are 0..nroutes-1 */
};

/* What router_find found. */
struct router_match {
	const struct graced_route *route; /* NULL: 404 or 405 */
	void *arg;
	size_t id;       /* route id, or nroutes for "no route" */
	int status;      /* 0 when found, else 404 or 405 */
	char allow[128]; /* for 405: the methods the path takes */
};

int router_add(
    struct router *r, const struct graced_route *routes, size_t n, void *arg);
/* Matches method and path (no query string; len bytes). HEAD matches GET. */
void router_find(const struct router *r, const char *method, const char *path,
    size_t len, struct router_match *m);
/* The route with that id, or NULL for the "no route" id. */
const struct graced_route *router_route(const struct router *r, size_t id);

#endif
