/* Unit tests for the events application's JSON validation and spool
 * (src/daemon/events.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "events.h"

static json_t *
parse(const char *body, char *err, size_t errlen)
{
	return events_parse(body, strlen(body), err, errlen);
}

static void
test_object_and_array(void **state)
{
	char err[256];
	json_t *list;

	(void)state;
	list = parse("{\"a\":1}", err, sizeof(err));
	assert_non_null(list);
	assert_int_equal(json_array_size(list), 1);
	assert_int_equal(
	    json_integer_value(json_object_get(json_array_get(list, 0), "a")),
	    1);
	json_decref(list);
	list = parse("[{\"a\":1},{},{\"b\":[1,2]}]", err, sizeof(err));
	assert_non_null(list);
	assert_int_equal(json_array_size(list), 3);
	json_decref(list);
}

static void
expect_rejected(const char *body, const char *words)
{
	char err[256] = "";
	json_t *list = parse(body, err, sizeof(err));

	assert_null(list);
	assert_non_null(strstr(err, words));
}

static void
test_rejections(void **state)
{
	(void)state;
	expect_rejected("", "invalid JSON");
	expect_rejected("{\"a\":", "invalid JSON");
	expect_rejected("{\"a\":1} trailing", "invalid JSON");
	expect_rejected("{\"a\":1,\"a\":2}", "invalid JSON");
	expect_rejected("[]", "empty array");
	expect_rejected("[1]", "event 0 is not an object");
	expect_rejected("[{}, \"x\"]", "event 1 is not an object");
	expect_rejected("\"x\"", "expected an object");
	expect_rejected("42", "expected an object");
	expect_rejected("null", "expected an object");
}

static void
test_embedded_nul_is_invalid(void **state)
{
	char err[256];
	static const char body[] = "{\"a\":\"x\0y\"}";

	(void)state;
	assert_null(events_parse(body, sizeof(body) - 1, err, sizeof(err)));
}

static void
test_unwritable_spool_names_path(void **state)
{
	char err[512] = "";

	(void)state;
	assert_null(
	    events_new("/nonexistent-dir/events.jsonl", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent-dir/events.jsonl"));
	assert_non_null(strstr(err, "No such file"));
}

static void
test_spool_opens_and_closes(void **state)
{
	char path[] = "/tmp/graced-test-spool-XXXXXX";
	char err[512];
	int fd = mkstemp(path);
	struct events *ev;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	ev = events_new(path, err, sizeof(err));
	assert_non_null(ev);
	assert_int_equal(events_reopen(ev), 0);
	events_free(ev);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_object_and_array),
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_embedded_nul_is_invalid),
		cmocka_unit_test(test_unwritable_spool_names_path),
		cmocka_unit_test(test_spool_opens_and_closes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
