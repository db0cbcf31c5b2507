/* Route lookup: a linear scan of a few const tables, exact matches only. */
#include <errno.h>
#include <string.h>

#include "router.h"

int
router_add(
    struct router *r, const struct graced_route *routes, size_t n, void *arg)
{
	if (r->ntables == ROUTER_MAX_TABLES)
		return -ENOSPC;
	r->tables[r->ntables].routes = routes;
	r->tables[r->ntables].n = n;
	r->tables[r->ntables].arg = arg;
	r->ntables++;
	r->nroutes += n;
	return 0;
}

static void
allow_add(char *allow, size_t cap, const char *method)
{
	size_t len = strlen(allow);

	if (strstr(allow, method) != NULL)
		return;
	if (len + strlen(method) + 3 > cap)
		return;
	if (len > 0)
		strcat(allow, ", ");
	strcat(allow, method);
}

void
router_find(const struct router *r, const char *method, const char *path,
    size_t len, struct router_match *m)
{
	size_t id = 0;
	int path_seen = 0;

	m->route = NULL;
	m->arg = NULL;
	m->id = r->nroutes;
	m->status = 404;
	m->allow[0] = '\0';
	for (size_t t = 0; t < r->ntables; t++) {
		const struct router_table *tab = &r->tables[t];
		for (size_t i = 0; i < tab->n; i++, id++) {
			const struct graced_route *rt = &tab->routes[i];
			if (strncmp(rt->path, path, len) != 0 ||
			    rt->path[len] != '\0')
				continue;
			if (strcmp(rt->method, method) == 0 ||
			    (strcmp(method, "HEAD") == 0 &&
			        strcmp(rt->method, "GET") == 0)) {
				m->route = rt;
				m->arg = tab->arg;
				m->id = id;
				m->status = 0;
				return;
			}
			path_seen = 1;
			allow_add(m->allow, sizeof(m->allow), rt->method);
			if (strcmp(rt->method, "GET") == 0)
				allow_add(m->allow, sizeof(m->allow), "HEAD");
		}
	}
	if (path_seen)
		m->status = 405;
}

const struct graced_route *
router_route(const struct router *r, size_t id)
{
	for (size_t t = 0; t < r->ntables; t++) {
		if (id < r->tables[t].n)
			return &r->tables[t].routes[id];
		id -= r->tables[t].n;
	}
	return NULL;
}
