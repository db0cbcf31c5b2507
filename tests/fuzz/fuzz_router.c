/* libFuzzer target: router_add and router_find. The input is lines of
 * "METHOD PATH": an empty line starts a new route table, the last line is
 * the request looked up. What the router finds is checked against the
 * tables. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

#define FUZZ_MAX_ROUTES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
handler(struct graced_request *r, void *arg)
{
	(void)r;
	(void)arg;
}

/* Splits "METHOD PATH" in place. */
static void
split(char *line, const char **method, const char **path)
{
	char *space = strchr(line, ' ');

	*method = line;
	*path = "";
	if (space != NULL) {
		*space = '\0';
		*path = space + 1;
	}
}

static void
check(const struct router *r, const char *method, const char *path, size_t len)
{
	struct router_match m;

	router_find(r, method, path, len, &m);
	if (m.route == NULL) {
		if ((m.status != 404 && m.status != 405) ||
		    m.id != r->nroutes || strlen(m.allow) >= sizeof(m.allow))
			__builtin_trap();
		return;
	}
	if (m.status != 0 || router_route(r, m.id) != m.route ||
	    strlen(m.route->path) != len ||
	    strncmp(m.route->path, path, len) != 0)
		__builtin_trap();
	if (strcmp(m.route->method, method) != 0 &&
	    (strcmp(method, "HEAD") != 0 ||
	        strcmp(m.route->method, "GET") != 0))
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct graced_route routes[FUZZ_MAX_ROUTES];
	struct router r;
	char *text = strndup((const char *)data, size), *line, *next;
	const char *method, *path;
	size_t n = 0, first = 0;

	if (text == NULL)
		return 0;
	memset(&r, 0, sizeof(r));
	for (line = text; (next = strchr(line, '\n')) != NULL; line = next) {
		*next++ = '\0';
		if (line[0] == '\0' || n == FUZZ_MAX_ROUTES) {
			/* Past ROUTER_MAX_TABLES, router_add says -ENOSPC. */
			router_add(&r, routes + first, n - first, NULL);
			first = n;
			if (n == FUZZ_MAX_ROUTES)
				break;
			continue;
		}
		split(line, &routes[n].method, &routes[n].path);
		routes[n].fn = handler;
		n++;
	}
	if (n > first)
		router_add(&r, routes + first, n - first, NULL);
	split(next == NULL ? line : next, &method, &path);
	check(&r, method, path, strlen(path));
	/* The worker looks up the path without its query string. */
	check(&r, method, path, strcspn(path, "?"));
	free(text);
	return 0;
}
