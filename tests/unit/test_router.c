/* Unit tests for src/lib/router.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <string.h>
#include <cmocka.h>

#include "router.h"

static void
handler(struct graced_request *r, void *arg)
{
	(void)r;
	(void)arg;
}

static const struct graced_route app[] = {
	{ "POST", "/v1/events", handler },
	{ "GET", "/v1/events", handler },
	{ "PUT", "/v1/items", handler },
};
static const struct graced_route builtin[] = {
	{ "GET", "/healthz", handler },
};

static struct router
make(void)
{
	struct router r;
	int arg = 0;

	memset(&r, 0, sizeof(r));
	assert_int_equal(router_add(&r, app, 3, &arg), 0);
	assert_int_equal(router_add(&r, builtin, 1, NULL), 0);
	return r;
}

static void
test_exact_match_gives_route_and_id(void **state)
{
	struct router r = make();
	struct router_match m;

	(void)state;
	router_find(&r, "GET", "/healthz", 8, &m);
	assert_ptr_equal(m.route, &builtin[0]);
	assert_int_equal(m.id, 3);
	assert_int_equal(m.status, 0);
	router_find(&r, "GET", "/v1/events", 10, &m);
	assert_ptr_equal(m.route, &app[1]);
	assert_int_equal(m.id, 1);
	assert_ptr_equal(router_route(&r, 1), &app[1]);
	assert_null(router_route(&r, r.nroutes));
}

static void
test_head_matches_get(void **state)
{
	struct router r = make();
	struct router_match m;

	(void)state;
	router_find(&r, "HEAD", "/healthz", 8, &m);
	assert_ptr_equal(m.route, &builtin[0]);
	router_find(&r, "HEAD", "/v1/items", 9, &m);
	assert_null(m.route);
	assert_int_equal(m.status, 405);
}

static void
test_unknown_path_is_404(void **state)
{
	struct router r = make();
	struct router_match m;

	(void)state;
	router_find(&r, "GET", "/healthzz", 9, &m);
	assert_null(m.route);
	assert_int_equal(m.status, 404);
	assert_int_equal(m.id, r.nroutes);
	/* A prefix of a route is not the route. */
	router_find(&r, "GET", "/health", 7, &m);
	assert_int_equal(m.status, 404);
	/* len bounds the path: the query string is not part of it. */
	router_find(&r, "GET", "/healthz?x=1", 8, &m);
	assert_int_equal(m.status, 0);
}

static void
test_wrong_method_is_405_with_allow(void **state)
{
	struct router r = make();
	struct router_match m;

	(void)state;
	router_find(&r, "DELETE", "/v1/events", 10, &m);
	assert_null(m.route);
	assert_int_equal(m.status, 405);
	assert_string_equal(m.allow, "POST, GET, HEAD");
	router_find(&r, "POST", "/healthz", 8, &m);
	assert_string_equal(m.allow, "GET, HEAD");
}

static void
test_table_limit(void **state)
{
	struct router r;

	(void)state;
	memset(&r, 0, sizeof(r));
	for (int i = 0; i < ROUTER_MAX_TABLES; i++)
		assert_int_equal(router_add(&r, builtin, 1, NULL), 0);
	assert_int_equal(router_add(&r, builtin, 1, NULL), -ENOSPC);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_match_gives_route_and_id),
		cmocka_unit_test(test_head_matches_get),
		cmocka_unit_test(test_unknown_path_is_404),
		cmocka_unit_test(test_wrong_method_is_405_with_allow),
		cmocka_unit_test(test_table_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
