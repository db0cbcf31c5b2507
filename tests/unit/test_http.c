/* Unit tests for src/lib/http.c: request ids, Connection: close and the
 * method names, on evhttp requests made without a connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/queue.h>
#include <cmocka.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "http.h"

static const char *
out_header(struct evhttp_request *req, const char *name)
{
	return evhttp_find_header(evhttp_request_get_output_headers(req), name);
}

/* The X-Request-Id set for a request that came with id (NULL: none). */
static void
id_for(const char *id, char *buf, size_t len)
{
	struct evhttp_request *req = evhttp_request_new(NULL, NULL);

	if (id != NULL)
		evhttp_add_header(
		    evhttp_request_get_input_headers(req), "X-Request-Id", id);
	http_set_id(req);
	assert_non_null(out_header(req, "X-Request-Id"));
	strncpy(buf, out_header(req, "X-Request-Id"), len - 1);
	buf[len - 1] = '\0';
	evhttp_request_free(req);
}

static int
is_fresh_id(const char *id)
{
	size_t len = strlen(id);

	if (len < 14 || id[12] != '-' || strspn(id, "0123456789abcdef") != 12)
		return 0;
	return strspn(id + 13, "0123456789abcdef") == len - 13;
}

static void
test_new_ids_are_unique(void **state)
{
	char a[32], b[32];
	size_t n = http_new_id(a);

	(void)state;
	assert_int_equal(n, strlen(a));
	assert_true(is_fresh_id(a));
	http_new_id(b);
	assert_true(is_fresh_id(b));
	/* Same process prefix, another counter. */
	assert_memory_equal(a, b, 13);
	assert_string_not_equal(a, b);
}

static void
test_client_id_is_echoed_only_if_acceptable(void **state)
{
	char long_id[HTTP_ID_MAX + 2], got[256];

	(void)state;
	id_for("abc-123", got, sizeof(got));
	assert_string_equal(got, "abc-123");
	id_for(NULL, got, sizeof(got));
	assert_true(is_fresh_id(got));
	id_for("", got, sizeof(got));
	assert_true(is_fresh_id(got));
	id_for("a\tb", got, sizeof(got));
	assert_true(is_fresh_id(got));
	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[HTTP_ID_MAX + 1] = '\0';
	id_for(long_id, got, sizeof(got));
	assert_true(is_fresh_id(got));
	long_id[HTTP_ID_MAX] = '\0';
	id_for(long_id, got, sizeof(got));
	assert_string_equal(got, long_id);
}

static void
test_set_close_once_and_drops_keep_alive(void **state)
{
	struct evhttp_request *req = evhttp_request_new(NULL, NULL);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evkeyval *kv;
	int n = 0;

	(void)state;
	evhttp_add_header(
	    evhttp_request_get_input_headers(req), "Connection", "keep-alive");
	http_set_close(req);
	http_set_close(req);
	assert_null(evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Connection"));
	TAILQ_FOREACH(kv, out, next)
	n += strcmp(kv->key, "Connection") == 0;
	assert_int_equal(n, 1);
	assert_string_equal(out_header(req, "Connection"), "close");
	evhttp_request_free(req);
}

static void
test_method_names(void **state)
{
	(void)state;
	assert_string_equal(http_method_name(EVHTTP_REQ_GET), "GET");
	assert_string_equal(http_method_name(EVHTTP_REQ_PATCH), "PATCH");
	assert_string_equal(
	    http_method_name((enum evhttp_cmd_type)(1 << 20)), "OTHER");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_ids_are_unique),
		cmocka_unit_test(test_client_id_is_echoed_only_if_acceptable),
		cmocka_unit_test(test_set_close_once_and_drops_keep_alive),
		cmocka_unit_test(test_method_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
